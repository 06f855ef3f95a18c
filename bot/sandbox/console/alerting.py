"""Real alerting for the demo: Debian's Prometheus evaluating the shipped alert rules against
the simulated fleet, and Debian's Alertmanager posting to the bot's webhook.

The rules are `manifests/prometheus-rules.yaml` as shipped, with two changes that only make
the demo fast: every `for:` becomes a few seconds and every range window a short one, so a
fault fires within seconds and clears soon after it is fixed (production wants minutes).
Intervals are short for the same reason: scrape and evaluation every second, Alertmanager
group_wait/group_interval one second (tests/support/promstack.py explains the timing).

Children get PR_SET_PDEATHSIG, so even a demo killed with SIGKILL leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["AlertingStack", "binaries", "demo_rules", "install_debian_packages", "start_alerting"]

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests"
RULE_FOR = "5s"
RULE_WINDOW = "20s"
PACKAGES = ("prometheus", "prometheus-alertmanager")


def binaries() -> tuple[str, str] | None:
    """(prometheus, alertmanager) from Debian's packages, or None when either is missing."""
    prom = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    am = shutil.which("prometheus-alertmanager", path="/usr/bin:" + os.environ.get("PATH", ""))
    am = am or shutil.which("alertmanager")
    return (prom, am) if prom and am else None


def install_debian_packages() -> bool:
    """As root, install Debian's packages like `make system-deps` does; True when it worked."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=600)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False, timeout=600)
        done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=600)
    for service in ("prometheus", "prometheus-alertmanager"):  # the packages start system services
        subprocess.run(["service", service, "stop"], capture_output=True, check=False, timeout=60)
    return done.returncode == 0 and binaries() is not None


def demo_rules(text: str | None = None) -> str:
    """The shipped rules as a plain Prometheus rules file, with demo-short `for` and windows."""
    doc = yaml.safe_load(text if text is not None else (MANIFESTS / "prometheus-rules.yaml").read_text())
    groups = doc["spec"]["groups"] if "spec" in doc else doc["groups"]
    for group in groups:
        for rule in group.get("rules", []):
            if "for" in rule:
                rule["for"] = RULE_FOR
            if "expr" in rule:
                rule["expr"] = re.sub(r"\[(\d+)([smhdw])\]", f"[{RULE_WINDOW}]", str(rule["expr"]))
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


def _pdeathsig() -> Callable[[], None] | None:
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        os.setpgrp()  # Ctrl-C in the terminal reaches the demo only; it stops the children itself
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start(name: str, argv: Callable[[int], list[str]], workdir: Path, timeout: float = 60.0) -> _Child:
    log = workdir / f"{name}.log"
    for _attempt in range(3):
        port = _free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                preexec_fn=_pdeathsig(),  # only prctl/setpgrp, no locks
            )
        child = _Child(name, process, port, log)
        ready = False
        try:
            ready = _wait_ready(child, timeout)
        finally:
            if not ready:  # also on Ctrl-C while waiting: no child left behind
                child.stop()
        if ready:
            return child
        if "address already in use" not in log.read_text(errors="replace"):
            break
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"{name} did not start; its output:\n{tail}")


def _wait_ready(child: _Child, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while child.process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{child.url}/-/ready", timeout=2).status_code == 200:
                return True
        time.sleep(0.1)
    return False


@dataclass
class AlertingStack:
    prometheus: _Child
    alertmanager: _Child

    def stop(self) -> None:
        self.prometheus.stop()
        self.alertmanager.stop()

    def firing(self) -> list[str]:
        """Names of the alerts Prometheus has firing now (for the console's status line)."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            data: dict[str, Any] = httpx.get(f"{self.prometheus.url}/api/v1/alerts", timeout=5).json()
            return sorted(
                {a["labels"]["alertname"] for a in data["data"]["alerts"] if a["state"] == "firing"}
            )
        return []


def start_alerting(
    workdir: Path, *, scrape_target: str, webhook_url: str, webhook_token: str
) -> AlertingStack:
    found = binaries()
    if found is None:
        raise RuntimeError("prometheus and prometheus-alertmanager are not installed")
    prom_bin, am_bin = found
    workdir.mkdir(parents=True, exist_ok=True)
    am_config = {
        "route": {
            "receiver": "incident-bot",
            "group_by": ["namespace", "deployment"],  # one incident per workload
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "incident-bot",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": webhook_token}},
                    }
                ],
            }
        ],
    }
    am_path = workdir / "alertmanager.yml"
    am_path.write_text(yaml.safe_dump(am_config, sort_keys=False))
    os.chmod(am_path, 0o600)
    alertmanager = _start(
        "alertmanager",
        lambda port: [
            am_bin,
            f"--config.file={am_path}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        workdir,
    )
    rules_path = workdir / "rules.yml"
    rules_path.write_text(demo_rules())
    prom_config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": [{"job_name": "model-serving", "static_configs": [{"targets": [scrape_target]}]}],
        "alerting": {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}
            ]
        },
    }
    prom_path = workdir / "prometheus.yml"
    prom_path.write_text(yaml.safe_dump(prom_config, sort_keys=False))
    try:
        prometheus = _start(
            "prometheus",
            lambda port: [
                prom_bin,
                f"--config.file={prom_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}",
                f"--storage.tsdb.path={workdir / 'prom-data'}",
                "--query.lookback-delta=15s",
                "--rules.alert.resend-delay=2s",
            ],
            workdir,
        )
    except BaseException:
        alertmanager.stop()
        raise
    return AlertingStack(prometheus, alertmanager)
