"""Run the real bot for tests: in-process under uvicorn (fast), or as a separate
`python -m bot serve` process (for restarts and kill -9)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from bot.config import Settings
from bot.server import create_app
from bot.services import Services
from tests.support.promstack import free_port

T = TypeVar("T")

SLACK_TOKEN = "xoxb-sandbox-token"
SIGNING_SECRET = "test-signing-secret"
WEBHOOK_TOKEN = "am-webhook-secret"


def _empty_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_settings(tmp_path: Path, slack_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": SLACK_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack_url,
        "channel": "C0INCIDENTS",
        "database_url": f"sqlite:///{tmp_path / 'bot.db'}",
        "webhook_token": WEBHOOK_TOKEN,
        "runbooks_dir": _empty_dir(tmp_path / "runbooks"),
        "slack_timeout": 3.0,
        "slack_post_interval": 0.0,
        "log_format": "text",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for a bot in its own process."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "INCIDENT_BOT_", "PROMETHEUS_URL"))
    }
    mapping = {
        "SLACK_BOT_TOKEN": settings.token(),
        "SLACK_SIGNING_SECRET": settings.signing_secret(),
        "SLACK_API_URL": settings.slack_api_url,
        "INCIDENT_BOT_CHANNEL": settings.channel,
        "INCIDENT_BOT_DATABASE_URL": settings.database_url,
        "INCIDENT_BOT_WEBHOOK_TOKEN": settings.webhook_token.get_secret_value()
        if settings.webhook_token
        else None,
        "INCIDENT_BOT_RUNBOOKS_DIR": str(settings.runbooks_dir),
        "INCIDENT_BOT_SLACK_TIMEOUT": str(settings.slack_timeout),
        "INCIDENT_BOT_SLACK_POST_INTERVAL": str(settings.slack_post_interval),
        "INCIDENT_BOT_LOG_FORMAT": settings.log_format,
        "INCIDENT_BOT_INTAKE_APPLIER": settings.intake_applier,
        "PROMETHEUS_URL": settings.prometheus_url,
        "ALERTMANAGER_URL": settings.alertmanager_url,
    }
    env.update({k: v for k, v in mapping.items() if v is not None})
    return env


def wait_until(predicate: Callable[[], T], *, timeout: float = 15.0, message: str = "condition") -> T:
    """Poll until `predicate()` is truthy; generous deadlines, no fixed sleeps."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.05)
        last = predicate()
    return last


@dataclass
class RunningBot:
    url: str
    services: Services
    loop: asyncio.AbstractEventLoop

    def client(self, *, token: str | None = WEBHOOK_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def post_alert(
        self, payload: dict[str, Any] | bytes, *, token: str | None = WEBHOOK_TOKEN
    ) -> httpx.Response:
        with self.client(token=token) as client:
            if isinstance(payload, bytes):
                return client.post(
                    "/alertmanager", content=payload, headers={"Content-Type": "application/json"}
                )
            return client.post("/alertmanager", json=payload)

    def incident(self, ref: str | int) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/api/incidents/{ref}")
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data

    def incidents(self) -> list[dict[str, Any]]:
        with self.client() as client:
            data: list[dict[str, Any]] = client.get("/api/incidents").json()["incidents"]
            return data


@contextmanager
def run_bot(settings: Settings, *, run_workers: bool = True) -> Iterator[RunningBot]:
    """The real app under a real uvicorn on a free loopback port, in a background thread."""
    if "intake_applier" not in settings.model_fields_set:
        # In-process bots apply the journal in a thread: a process per test app would cost a
        # second of start-up each. The `serve` processes (BotProcess) run the default.
        settings = settings.model_copy(update={"intake_applier": "thread"})
    app = create_app(settings, run_workers=run_workers)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="bot-under-test", daemon=True)
    thread.start()
    wait_until(lambda: server.started or failure or not thread.is_alive(), timeout=30, message="bot to start")
    if failure or not server.started:
        thread.join(timeout=5)
        raise RuntimeError(f"bot failed to start: {failure[0] if failure else 'uvicorn exited'}")
    try:
        yield RunningBot(url=f"http://127.0.0.1:{port}", services=app.state.services, loop=loop)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class BotProcess:
    """`python -m bot serve` in its own process, so a test can kill -9 it and start it again."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BotProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"bot exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=30, message="bot process to answer /healthz")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, as a crash or OOM kill would do."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def close(self) -> None:  # for contextlib.closing
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def post_alert(self, payload: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/alertmanager",
            json=payload,
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            timeout=30,
        )
