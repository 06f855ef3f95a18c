"""`incident-bot demo` live: the bot, its stand-ins, a simulated model fleet, real alerting where
installed, and the web console, all on loopback until Ctrl-C.

Order of start: Slack and Kubernetes stand-ins, the exporter, the bot (uvicorn, SQLite in the
work directory), Prometheus and Alertmanager (or the replayer), the console. A background loop
keeps the exporter's faults in step with the cluster (a rollback ends the bad rollout's
fault) and, in replay mode, posts recorded notifications. A few seconds after start it flips
"bad rollout" on, so whoever opens the console finds an incident with buttons to press.
Everything is stopped in reverse order in `finally`, whatever ended the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import uvicorn
import yaml

from bot.config import Settings
from bot.sandbox.console.alerting import AlertingStack, binaries, install_debian_packages, start_alerting
from bot.sandbox.console.fleet import Fleet, seed_cluster
from bot.sandbox.console.replay import Replayer
from bot.sandbox.console.server import ConsoleServer
from bot.sandbox.console.slack_side import SlackSide
from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from bot.server import create_app

__all__ = ["DEMO_POLICY", "run_console"]

logger = logging.getLogger(__name__)

CHANNEL = "C0INCIDENTS"
SIGNING_SECRET = "demo-signing-secret"  # noqa: S105 - signs requests between local processes only
RUNBOOKS = Path(__file__).resolve().parents[3] / "runbooks"
FIRST_FAULT_AFTER = 3.0  # seconds after start the demo breaks something by itself

# The demo's guardrails: on-call (alice, bob) act anywhere, rollbacks and scale-downs after a
# confirmation; carol (an analyst) may ask, and one of the on-call engineers approves.
DEMO_POLICY: dict[str, Any] = {
    "defaults": {"cooldown": "0s", "confirm": True, "dry_run": False, "max_silence_duration": "1d"},
    "rules": [
        {
            "name": "demo-oncall",
            "actions": ["rollback", "scale", "restart", "silence"],
            "users": ["U0ONCALL1", "U0ONCALL2"],
            "namespaces": ["*"],
            "deployments": ["*"],
            "replicas": {"min": 0, "max": 8},
        },
        {
            "name": "demo-analyst",
            "actions": ["rollback", "scale", "restart", "silence"],
            "users": ["U0ANALYST"],
            "namespaces": ["*"],
            "deployments": ["*"],
            "replicas": {"min": 1, "max": 4},
            "approvers": {"required": 1, "users": ["U0ONCALL1", "U0ONCALL2"]},
        },
    ],
}


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the demo stops on SIGINT/SIGTERM itself, so its
    `finally` (which stops Prometheus, Alertmanager and the stand-ins) always runs."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _settings(
    slack: SlackStandIn, workdir: Path, kubeconfig: Path, token: str, alerting: AlertingStack | None
) -> Settings:
    policy = workdir / "policy.yaml"
    policy.write_text(yaml.safe_dump(DEMO_POLICY, sort_keys=False))
    return Settings(
        _env_file=None,
        slack_bot_token=slack.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.url,
        channel=CHANNEL,
        database_url=f"sqlite:///{workdir / 'incident-bot-demo.db'}",
        webhook_token=token,
        runbooks_dir=RUNBOOKS,
        policy_file=policy,
        kubeconfig=str(kubeconfig),
        prometheus_url=alerting.prometheus.url if alerting else None,
        alertmanager_url=alerting.alertmanager.url if alerting else None,
        dry_run=False,
        verify_seconds=120,
        slack_post_interval=0.2,
        log_level="WARNING",
        log_format="text",
    )


def run_console(host: str, port: int, workdir: Path, out: TextIO, *, replay: bool = False) -> int:
    try:
        return asyncio.run(_run(host, port, workdir, out, replay))
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopped.", file=out, flush=True)


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


async def _run(host: str, port: int, workdir: Path, out: TextIO, replay: bool) -> int:
    token = secrets.token_urlsafe(16)
    stack = contextlib.ExitStack()
    alerting: AlertingStack | None = None
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None
    try:
        slack = stack.enter_context(SlackStandIn())
        kube = stack.enter_context(KubeStandIn())
        seed_cluster(kube)
        exporter = stack.enter_context(ModelServingExporter())
        fleet = Fleet(exporter, kube)
        base = f"http://{host}:{port}"
        webhook = f"{base}/alertmanager"

        if not replay and binaries() is None and os.geteuid() == 0:
            _say(out, "installing Debian's prometheus and prometheus-alertmanager (as make system-deps does)")
            install_debian_packages()
        if replay:
            _say(out, "--replay: replaying recorded Alertmanager notifications instead of running Prometheus")
        elif binaries() is not None:
            # In the main thread: PR_SET_PDEATHSIG follows the thread that started the child.
            try:
                alerting = start_alerting(
                    workdir / "alerting",
                    scrape_target=exporter.target,
                    webhook_url=webhook,
                    webhook_token=token,
                )
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                _say(out, f"{first} (logs in {workdir / 'alerting'}): replaying recorded notifications")
        else:
            _say(
                out,
                "prometheus and prometheus-alertmanager are not installed "
                "(sudo apt-get install prometheus prometheus-alertmanager): replaying recorded notifications",
            )
        replayer = None if alerting else Replayer(webhook, token)

        settings = _settings(slack, workdir, kube.write_kubeconfig(workdir / "kubeconfig"), token, alerting)
        app = create_app(settings)
        server = _Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _stopper(server))
        serving = asyncio.create_task(server.serve())
        await _wait(
            lambda: server is not None and (server.started or (serving is not None and serving.done()))
        )
        if serving.done():
            return 1

        side = SlackSide(base, slack, SIGNING_SECRET)
        console = ConsoleServer(slack, fleet, side, host=host, status=lambda: _status(alerting))
        console.start()
        stack.callback(console.stop)

        _say(out, f"incident-bot demo: bot on {base}, database in {workdir}")
        _say(out, f"  Slack stand-in:      {slack.url}")
        _say(out, f"  Kubernetes stand-in: {kube.url}")
        _say(out, f"  model-serving metrics: {exporter.url}/metrics")
        if alerting is not None:
            _say(out, f"  Prometheus:   {alerting.prometheus.url}  (the shipped alert rules, demo-short)")
            _say(out, f"  Alertmanager: {alerting.alertmanager.url}")
        _say(out, f"\nOpen the console: {console.url}")
        _say(out, "A bad model rollout starts in a few seconds. Ctrl-C stops everything.")

        started = time.monotonic()
        first_fault_done = False
        while not serving.done():
            if not first_fault_done and time.monotonic() - started >= FIRST_FAULT_AFTER:
                first_fault_done = True
                await asyncio.to_thread(fleet.set_fault, "bad_rollout", True)
            await asyncio.to_thread(_step, fleet, replayer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(serving), timeout=0.5)
        return 0
    finally:
        if server is not None:
            server.should_exit = True
        if serving is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
        if alerting is not None:
            alerting.stop()
        stack.close()


def _stopper(server: uvicorn.Server) -> Callable[[], None]:
    def stop() -> None:
        server.should_exit = True

    return stop


def _step(fleet: Fleet, replayer: Replayer | None) -> None:
    try:
        fleet.sync()
        if replayer is not None:
            replayer.update(fleet.active())
    except Exception:
        logger.exception("the demo's fleet loop failed once; trying again")


def _status(alerting: AlertingStack | None) -> dict[str, Any]:
    if alerting is None:
        return {"alerting": "replay", "firing": []}
    return {
        "alerting": "prometheus",
        "prometheus": alerting.prometheus.url,
        "alertmanager": alerting.alertmanager.url,
        "firing": alerting.firing(),
    }


async def _wait(predicate: Callable[[], Any], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the bot did not start in time")
        await asyncio.sleep(0.05)
