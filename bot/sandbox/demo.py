"""`incident-bot demo`: the real bot, locally, with nothing to set up.

It runs the same server `serve` runs, on an embedded SQLite database, pointed at the local
stand-ins of the Slack Web API and of the Kubernetes API (one vLLM deployment with a recent
model rollout); actions are in dry-run. It plays a sample
model-serving incident through the real webhook endpoint (a vLLM latency alert firing, then
resolving) and prints what the bot posts to "Slack", live, as readable text. Then it keeps
running so you can send your own alerts with curl, until Ctrl-C (or exits with `--once`).

Without `--once` the demo is the live one in bot/sandbox/console/: a web console, a simulated
model fleet to break, real Prometheus and Alertmanager where installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
import uvicorn

from bot.config import Settings
from bot.sandbox import samples
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import RecordedCall
from bot.sandbox.transcript import describe_call
from bot.server import create_app

__all__ = ["run_demo"]

CHANNEL = "C0INCIDENTS"
SIGNING_SECRET = "demo-signing-secret"  # noqa: S105 - signs requests to the local stand-in only


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _shipped_runbooks() -> Path:
    return Path(__file__).resolve().parents[2] / "runbooks"


def seed_cluster(kube: KubeStandIn) -> None:
    """The demo's model server: llama on vLLM, whose newest revision (a new fine-tune) went
    out 25 minutes before the sample alert starts."""
    now = datetime.now(UTC)
    kube.add_deployment(
        "llm-prod",
        "vllm-llama",
        image="vllm/vllm-openai:v0.6.3",
        replicas=2,
        model="meta-llama/Llama-3.1-8B-Instruct",
        model_version="v14",
        change_cause="model v14: new fine-tune",
        created_at=now - timedelta(minutes=29),
        history=[
            {"model_version": "v12", "created_at": now - timedelta(days=12)},
            {"model_version": "v13", "created_at": now - timedelta(days=5)},
        ],
    )


def demo_settings(slack: SlackStandIn, workdir: Path, kubeconfig: Path | None = None) -> Settings:
    return Settings(
        _env_file=None,
        slack_bot_token=slack.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.url,
        channel=CHANNEL,
        database_url=f"sqlite:///{workdir / 'incident-bot-demo.db'}",
        runbooks_dir=_shipped_runbooks(),
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        dry_run=True,
        slack_post_interval=0.2,
        log_level="WARNING",
        log_format="text",
    )


def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    once: bool = False,
    workdir: Path | None = None,
    out: TextIO = sys.stdout,
    replay: bool = False,
) -> int:
    if not _port_free(host, port):
        chosen = _free_port(host)
        print(f"port {port} is busy on {host}; using {chosen} instead", file=out)
        port = chosen
    workdir = workdir or Path(tempfile.mkdtemp(prefix="incident-bot-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not once:  # the live demo: web console, simulated fleet, real alerting where installed
        from bot.sandbox.console.run import run_console

        return run_console(host, port, workdir, out, replay=replay)
    try:
        return asyncio.run(_demo(host, port, once, workdir, out))
    except KeyboardInterrupt:
        print("\nstopped.", file=out)
        return 0


def _printer(out: TextIO, names: dict[str, str]) -> Callable[[RecordedCall], None]:
    def show(call: RecordedCall) -> None:
        print(f"  slack <- {describe_call(call, names)}", file=out, flush=True)

    return show


async def _wait(predicate: Callable[[], Any], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo waited too long for the bot; see the log above")
        await asyncio.sleep(0.05)


async def _demo(host: str, port: int, once: bool, workdir: Path, out: TextIO) -> int:
    with SlackStandIn() as slack, KubeStandIn() as kube:
        seed_cluster(kube)
        settings = demo_settings(slack, workdir, kube.write_kubeconfig(workdir / "kubeconfig"))
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
        )
        serving = asyncio.create_task(server.serve())
        await _wait(lambda: server.started or serving.done())
        if serving.done():
            return 1
        base = f"http://{host}:{port}"
        names = {u.id: u.name for u in (slack.user(uid) for uid in ("U0ONCALL1", "U0ONCALL2", "U0ANALYST"))}
        unsubscribe = slack.subscribe(_printer(out, names))
        print(
            f"incident-bot demo: bot on {base}, Slack stand-in on {slack.url}, database in {workdir}\n",
            file=out,
            flush=True,
        )
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                await _play(client, slack, out)
            print(slack.transcript(CHANNEL), file=out, flush=True)
            if once:
                return 0
            print(_instructions(base), file=out, flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            return 0
        finally:
            unsubscribe()
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving


async def _play(client: httpx.AsyncClient, slack: SlackStandIn, out: TextIO) -> None:
    print("1. Alertmanager posts a firing vLLM latency alert for llama-3-8b", file=out, flush=True)
    response = await client.post("/alertmanager", json=samples.vllm_latency("firing"))
    print(f"   bot answered {response.status_code} {response.json()}", file=out, flush=True)
    key = response.json().get("incident")
    await _wait(lambda: any(c.method == "chat.postMessage" and c.ok for c in slack.calls()))

    print("\n2. A second replica starts failing too: the alert group grows", file=out, flush=True)
    response = await client.post("/alertmanager", json=samples.vllm_latency("firing", replicas=2))
    print(f"   bot answered {response.status_code} {response.json()}", file=out, flush=True)
    await _wait(lambda: _posted(slack, "alert firing") and _posted(slack, "what changed"))

    print("\n3. Latency recovers: Alertmanager posts the resolution", file=out, flush=True)
    response = await client.post("/alertmanager", json=samples.vllm_latency("resolved", replicas=2))
    print(f"   bot answered {response.status_code} {response.json()}", file=out, flush=True)

    async def resolved() -> bool:
        detail = (await client.get(f"/api/incidents/{key}")).json()
        return bool(detail.get("status") == "resolved")

    deadline = time.monotonic() + 20
    while not await resolved():
        if time.monotonic() > deadline:
            raise TimeoutError("the incident did not resolve in time")
        await asyncio.sleep(0.1)
    await _wait(lambda: _posted(slack, " resolved"))
    print("\nWhat #incidents looks like now:\n", file=out, flush=True)


def _posted(slack: SlackStandIn, text: str) -> bool:
    """Whether the bot has posted a message containing `text` in the incidents channel."""
    return any(
        text in message.text
        for root in slack.messages(CHANNEL)
        for message in (root, *slack.thread(CHANNEL, root.ts))
    )


def _instructions(base: str) -> str:
    return (
        "\nThe bot keeps running. Try:\n"
        f"  curl -s {base}/api/incidents | python3 -m json.tool\n"
        f"  curl -s {base}/metrics | grep incident_bot_\n"
        f"  curl -s -XPOST -H 'Content-Type: application/json' --data @your-alert.json {base}/alertmanager\n"
        "Ctrl-C to stop.\n"
    )
