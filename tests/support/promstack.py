"""Real Prometheus and real Alertmanager on loopback, for integration and end-to-end tests.

Debian's binaries (`prometheus` 2.42, `prometheus-alertmanager` 0.25) are started as child
processes, each on its own free port of 127.0.0.1 with its own data directory in a temp dir, so
any number of them can run side by side (also next to other test runs on the same machine). A
missing binary is a failure, never a skip: integration tests that silently do nothing are worse
than a red build.

Usage from a test module::

    from tests.support.promstack import alert_rule, rules_file

    pytest_plugins = ["tests.support.promstack"]   # fixtures: prometheus_factory, ...

    def test_x(prometheus_factory, alertmanager_factory, webhook_recorder):
        am = alertmanager_factory(webhook_url=webhook_recorder.url, bearer_token="t")
        prom = prometheus_factory(
            scrape_targets=["127.0.0.1:8000"],
            rules=rules_file(alert_rule("Down", "up == 0")),
            alertmanager_url=am.url,
        )

History that cannot be waited for (last week's values, the hour before an incident) is
backfilled before start: `prometheus_factory(backfill=openmetrics_text)` runs `promtool tsdb
create-blocks-from openmetrics` into the server's data directory (`backfill_openmetrics`).

The docstring carries PYTEST_DONT_REWRITE: test modules import helpers from here *and* name it in
`pytest_plugins`, and pytest would otherwise warn (an error under `filterwarnings = error`) that
the already imported module cannot be assertion-rewritten. The lead may instead list it in the
root conftest's `pytest_plugins`; both work together.

Flags and why:

* `--web.listen-address=127.0.0.1:PORT`: loopback only; the port comes from `free_port()`.
  Binding port 0 and closing leaves a small race with other processes, so a start that dies
  with "address already in use" is retried on a new port.
* `--storage.tsdb.path` / `--storage.path` in the workdir: no shared state between servers.
* Alertmanager `--cluster.listen-address=` (empty): disables HA gossip. Without it every
  Alertmanager binds 0.0.0.0:9094 (clashes between parallel runs) and waits for the gossip mesh
  to settle before it sends notifications.
* `--web.external-url=http://127.0.0.1:PORT`: `generatorURL` (Prometheus) and `externalURL`
  (Alertmanager webhook) point at the real server instead of the machine's hostname.
* Prometheus `--web.enable-lifecycle`: `POST /-/reload` (`PrometheusServer.reload()`).
  Alertmanager always serves `POST /-/reload`.
* Prometheus `--query.lookback-delta` (default here 15s instead of 5m): how long an instant
  query keeps returning a series' last sample across a gap without a staleness marker (a
  stalled scrape, a sample in the past). Targets and series that vanish are marked stale and
  leave queries at once anyway. 15s stays well above the 1s scrape interval, so a slow scrape
  on a loaded machine does not make series blink out of queries.

Timing of the loop (scrape -> rule -> Alertmanager -> webhook), from the Prometheus 2.42 and
Alertmanager 0.25 sources:

* Prometheus discovers its scrape targets *and its Alertmanagers* through the discovery manager,
  which hands out updates at most every 5 seconds (`updatert`, not configurable). For about 5s
  after start nothing is scraped and alerts have nowhere to go; an alert sent then is dropped
  (counted in `prometheus_notifications_dropped_total`). `start_prometheus` therefore waits until
  the Alertmanager shows up in `/api/v1/alertmanagers`; use `wait_for_targets_up()` before relying
  on scraped data.
* A rule evaluates every `evaluation_interval` (1s here). With `for: 0s` an alert fires on the
  first evaluation that sees the condition, i.e. one scrape plus one evaluation after the change.
* Prometheus sends a *firing* alert when it starts firing and then again every
  `--rules.alert.resend-delay` (default 1m, here 2s); each send sets
  `endsAt = now + 4 * max(resend-delay, evaluation_interval)` (here 8s). Alertmanager treats an
  alert whose `endsAt` passed as resolved, so this is how long Prometheus may stall before
  Alertmanager resolves the alert on its own. 2s keeps that margin comfortable on a loaded
  2-core machine while still re-sending quickly an alert that was dropped at start.
* A *resolved* alert is sent on the very next evaluation after the condition clears
  (`needsSending`: `ResolvedAt > LastSentAt`), independent of the resend delay, with
  `endsAt = resolution time`. So `resend-delay` does not slow resolution down.
* Alertmanager's `resolve_timeout` only applies to alerts posted *without* `endsAt`; Prometheus
  always sets `endsAt`, so it plays no part in the Prometheus loop. It matters for alerts posted
  by hand to `/api/v2/alerts` without `endsAt`.
* Alertmanager sends the first notification of a new group after `group_wait` (1s here) and
  later changes, including "resolved", on the next `group_interval` tick (1s here). Firing alerts
  in the webhook body carry `endsAt: "0001-01-01T00:00:00Z"`.

So resolution reaches the webhook about scrape (<=1s) + evaluation (<=1s) + `group_interval`
(<=1s) after the metric changes; firing takes the same with `group_wait` instead of
`group_interval`. Measured here (2 shared cores, two test runs at once): gauge set -> firing
webhook 2.1-2.9s, gauge cleared -> resolved webhook 1.0-2.0s. Starting Prometheus costs about
5s more (discovery, above); Alertmanager is ready in well under a second.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

__all__ = [
    "AlertmanagerServer",
    "PrometheusServer",
    "RecordedRequest",
    "WebhookRecorder",
    "alert_rule",
    "alertmanager",
    "alertmanager_factory",
    "backfill_openmetrics",
    "find_binary",
    "free_port",
    "poll_until",
    "prometheus_factory",
    "rules_file",
    "start_alertmanager",
    "start_prometheus",
    "webhook_recorder",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a server gets to answer `/-/ready`. Generous: a loaded 2-core machine shared with
#: other test runs can take several seconds to start a Go binary and open its TSDB.
START_TIMEOUT = 60.0
#: How long `stop()` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_HTTP_TIMEOUT = 10.0


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_DEBIAN_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}


def find_binary(*names: str) -> str:
    """The absolute path of the first of `names` on PATH (or in /usr/bin).

    Raises instead of skipping: a machine without the binaries cannot run these tests, and
    that has to be visible.
    """
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
        if found:
            return found
    packages = sorted({_DEBIAN_PACKAGES.get(n, n) for n in names})
    raise RuntimeError(
        f"none of {', '.join(names)} found on PATH; install the Debian package(s) "
        f"{', '.join(packages)} (apt-get install {' '.join(packages)})"
    )


def poll_until(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `check` until it returns something other than None/False; raise TimeoutError naming
    `what` (and the last exception `check` raised, if any) when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error = exc
            result = None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------- processes

# Every live server, so that an interpreter exit without fixture teardown (Ctrl-C, a crash in
# a session hook, a server started without a fixture and forgotten) still stops them.
_LIVE: set[_Server] = set()
_ATEXIT_LOCK = threading.Lock()
_atexit_registered = False


def _stop_all_live() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


def _register_atexit() -> None:
    global _atexit_registered
    with _ATEXIT_LOCK:
        if not _atexit_registered:
            atexit.register(_stop_all_live)
            _atexit_registered = True


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGTERM the child when its parent dies.

    This covers the exits that skip atexit (SIGKILL of pytest, `os._exit` from
    pytest-timeout's thread method). PR_SET_PDEATHSIG fires when the *thread* that forked the
    child ends, so it is only used when starting from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


class _PortInUse(Exception):
    pass


@dataclass(eq=False)
class _Server:
    """A running child process with an HTTP API on `url`."""

    name: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's stdout+stderr (for failure messages)."""
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL. Idempotent."""
        _terminate(self.process)
        _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get_json(self, path: str, params: Any = None) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=_HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.post(self.url + path, timeout=_HTTP_TIMEOUT, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{self.name} POST {path} answered {response.status_code}: {response.text.strip()}"
            )
        return response


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _launch(
    name: str,
    workdir: Path,
    build_argv: Callable[[int], list[str]],
    *,
    timeout: float,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start `build_argv(port)` and wait for `GET /-/ready`; retry on a port clash (unless
    the caller asked for one particular port)."""
    _register_atexit()
    log_path = workdir / f"{name}.log"
    wanted = port
    for _attempt in range(_PORT_ATTEMPTS if wanted is None else 1):
        port = wanted if wanted is not None else free_port()
        argv = build_argv(port)
        with log_path.open("ab") as log:
            log.write(f"--- {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                preexec_fn=_parent_death_signal(),
            )
        try:
            _wait_ready(name, process, port, log_path, timeout)
        except _PortInUse:
            _terminate(process)
            continue
        except BaseException:
            _terminate(process)
            raise
        return process, port, log_path
    raise RuntimeError(f"{name}: no free port after {_PORT_ATTEMPTS} attempts\n{_tail(log_path)}")


def _wait_ready(
    name: str, process: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float
) -> None:
    url = f"http://127.0.0.1:{port}/-/ready"
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            tail = _tail(log_path)
            if "address already in use" in tail:
                raise _PortInUse
            raise RuntimeError(f"{name} exited with code {code} during start; its output:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{name} on port {port} not ready after {timeout:.0f}s; its output:\n{_tail(log_path)}"
            )
        time.sleep(0.1)


# --------------------------------------------------------------------------- Prometheus


def alert_rule(
    name: str,
    expr: str,
    *,
    for_: str = "0s",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One alerting rule; `for: 0s` by default so it fires on the first evaluation."""
    rule: dict[str, Any] = {"alert": name, "expr": expr, "for": for_}
    if labels:
        rule["labels"] = dict(labels)
    if annotations:
        rule["annotations"] = dict(annotations)
    return rule


def rules_file(*rules: Mapping[str, Any], group: str = "promstack", interval: str | None = None) -> str:
    """A Prometheus rules file (YAML text) with one group holding `rules`."""
    group_doc: dict[str, Any] = {"name": group, "rules": [dict(r) for r in rules]}
    if interval:
        group_doc["interval"] = interval
    return yaml.safe_dump({"groups": [group_doc]}, sort_keys=False)


def _scrape_configs(targets: Sequence[str], job: str) -> list[dict[str, Any]]:
    """Group targets ("host:port" or "http://host:port/path") into jobs by scheme and path."""
    jobs: dict[tuple[str, str], list[str]] = {}
    for target in targets:
        if "://" in target:
            parts = urlsplit(target)
            key = (parts.scheme, parts.path or "/metrics")
            jobs.setdefault(key, []).append(parts.netloc)
        else:
            jobs.setdefault(("http", "/metrics"), []).append(target)
    configs = []
    for index, ((scheme, path), hosts) in enumerate(jobs.items()):
        configs.append(
            {
                "job_name": job if index == 0 else f"{job}-{index + 1}",
                "scheme": scheme,
                "metrics_path": path,
                "static_configs": [{"targets": hosts}],
            }
        )
    return configs


@dataclass(eq=False)
class PrometheusServer(_Server):
    """A running Prometheus; `url` is its base URL (what `PROMETHEUS_URL` would be)."""

    scrape_targets: tuple[str, ...] = ()
    config_path: Path | None = field(default=None, repr=False)
    rules_path: Path | None = field(default=None, repr=False)

    def reload(self) -> None:
        """`POST /-/reload`; raises with Prometheus's message if the new config is invalid."""
        self._post("/-/reload")

    def set_rules(self, rules: str) -> None:
        """Replace the rules file and reload."""
        if self.rules_path is None:
            raise RuntimeError("this Prometheus was started without a rules file")
        self.rules_path.write_text(rules)
        self.reload()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the `data.result` list."""
        body = self._get_json("/api/v1/query", {"query": expr})
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get_json("/api/v1/targets")["data"]["activeTargets"]
        return result

    def wait_for_targets_up(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every configured scrape target was scraped successfully.

        Discovery alone takes up to 5s after start (see the module docstring).
        """
        expected = len(self.scrape_targets)

        def check() -> list[dict[str, Any]] | None:
            active = self.targets()
            if len(active) >= expected and all(t.get("health") == "up" for t in active):
                return active
            return None

        try:
            return poll_until(check, timeout=timeout, what=f"{expected} scrape target(s) up")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; targets now: {self._target_summary()}") from None

    def _target_summary(self) -> str:
        with contextlib.suppress(Exception):
            return json.dumps(
                [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in self.targets()]
            )
        return "<unavailable>"

    def alerts(self) -> list[dict[str, Any]]:
        """`GET /api/v1/alerts`: pending and firing alerts."""
        result: list[dict[str, Any]] = self._get_json("/api/v1/alerts")["data"]["alerts"]
        return result

    def wait_for_alert(self, name: str, state: str = "firing", timeout: float = 30.0) -> dict[str, Any]:
        """Wait for an alert named `name` in `state` ("pending", "firing"); with "inactive",
        wait until no alert of that name is pending or firing (returns an empty dict)."""

        def check() -> dict[str, Any] | None:
            matching = [a for a in self.alerts() if a["labels"].get("alertname") == name]
            if state == "inactive":
                return {} if not matching else None
            for alert in matching:
                if alert.get("state") == state:
                    return alert
            return None

        result: dict[str, Any] = poll_until(check, timeout=timeout, what=f"alert {name} {state}")
        return result

    def alertmanagers(self) -> list[str]:
        """URLs of the Alertmanagers Prometheus currently sends to."""
        data = self._get_json("/api/v1/alertmanagers")["data"]
        return [am["url"] for am in data.get("activeAlertmanagers", [])]


def backfill_openmetrics(workdir: Path, text: str) -> None:
    """Write OpenMetrics `text` as TSDB blocks into the data directory `start_prometheus(workdir)`
    uses, with `promtool tsdb create-blocks-from openmetrics` (Debian's promtool 2.42).

    Call before starting Prometheus: it loads blocks at start. Blocks may overlap the present
    (Prometheus 2.39+ merges overlapping blocks), so "now" can be backfilled too. Samples of a
    series must be in time order, and each metric family's samples together.
    """
    promtool = find_binary("promtool")
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "backfill.om"
    source.write_text(text if text.endswith("\n") else text + "\n")
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "data")],
        capture_output=True,
        text=True,
        check=False,
        timeout=START_TIMEOUT,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"promtool could not backfill {source} (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr).strip()[-2000:]}"
        )


def start_prometheus(
    workdir: Path,
    *,
    scrape_targets: Sequence[str] = (),
    rules: str | None = None,
    alertmanager_url: str | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    resend_delay: str = "2s",
    lookback_delta: str = "15s",
    job: str = "promstack",
    extra_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
    wait_for_alertmanager: bool = True,
    backfill: str | None = None,
    port: int | None = None,
) -> PrometheusServer:
    """Start Prometheus and wait until it is ready and, with `alertmanager_url` (unless
    `wait_for_alertmanager=False`), until it has discovered that Alertmanager (about 5s, see the
    module docstring), so no alert is dropped. Raises RuntimeError with the process's output
    if it does not start.

    `backfill` is OpenMetrics text (samples with timestamps in seconds, ending in `# EOF`)
    written into the TSDB before start (`backfill_openmetrics`): history that cannot be
    waited for, such as last week's values. `port` asks for one particular port (a test that
    starts Prometheus where the bot already expects it), with no retry on a clash."""
    binary = find_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    if backfill is not None:
        backfill_openmetrics(workdir, backfill)
    config_path = workdir / "prometheus.yml"
    rules_path = workdir / "rules.yml"
    rules_path.write_text(rules if rules is not None else "groups: []\n")

    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(rules_path)],
        "scrape_configs": _scrape_configs(scrape_targets, job),
    }
    if alertmanager_url:
        parts = urlsplit(alertmanager_url)
        am_config: dict[str, Any] = {
            "api_version": "v2",
            "scheme": parts.scheme or "http",
            "timeout": "5s",
            "static_configs": [{"targets": [parts.netloc]}],
        }
        if parts.path not in ("", "/"):
            am_config["path_prefix"] = parts.path
        config["alerting"] = {"alertmanagers": [am_config]}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            f"--storage.tsdb.path={data_dir}",
            "--web.enable-lifecycle",
            f"--query.lookback-delta={lookback_delta}",
            f"--rules.alert.resend-delay={resend_delay}",
            *extra_args,
        ]

    process, port, log_path = _launch("prometheus", workdir, argv, timeout=timeout, port=port)
    server = PrometheusServer(
        name="prometheus",
        port=port,
        workdir=workdir,
        process=process,
        log_path=log_path,
        scrape_targets=tuple(scrape_targets),
        config_path=config_path,
        rules_path=rules_path,
    )
    _LIVE.add(server)
    if alertmanager_url and wait_for_alertmanager:
        try:
            poll_until(
                lambda: server.alertmanagers() or None,
                timeout=timeout,
                what=f"Prometheus to discover Alertmanager {alertmanager_url}",
            )
        except BaseException:
            server.stop()
            raise
    return server


# --------------------------------------------------------------------------- Alertmanager


@dataclass(eq=False)
class AlertmanagerServer(_Server):
    """A running Alertmanager; `url` is its base URL (what `ALERTMANAGER_URL` would be)."""

    config_path: Path | None = field(default=None, repr=False)

    def reload(self) -> None:
        self._post("/-/reload")

    def alerts(self, *, filters: Sequence[str] = (), **flags: bool) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts`; `filters` are matchers like 'alertname="X"', `flags` are
        active/silenced/inhibited/unprocessed booleans."""
        params: list[tuple[str, str]] = [("filter", f) for f in filters]
        params += [(k, str(v).lower()) for k, v in flags.items()]
        result: list[dict[str, Any]] = self._get_json("/api/v2/alerts", params)
        return result

    def silences(self) -> list[dict[str, Any]]:
        """`GET /api/v2/silences`, all states."""
        result: list[dict[str, Any]] = self._get_json("/api/v2/silences")
        return result

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """`POST /api/v2/alerts`, the way Prometheus sends them (labels, annotations,
        startsAt, endsAt, generatorURL)."""
        self._post("/api/v2/alerts", json=list(alerts))

    def wait_for_alert(self, labels: Mapping[str, str], timeout: float = 30.0) -> dict[str, Any]:
        """Wait until an alert whose labels include `labels` is known to Alertmanager."""

        def check() -> dict[str, Any] | None:
            for alert in self.alerts():
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    return alert
            return None

        result: dict[str, Any] = poll_until(check, timeout=timeout, what=f"Alertmanager alert {labels}")
        return result


def start_alertmanager(
    workdir: Path,
    *,
    webhook_url: str | None = None,
    bearer_token: str | None = None,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    resolve_timeout: str = "5m",
    group_by: Sequence[str] = ("alertname",),
    receiver: str = "incident-bot",
    send_resolved: bool = True,
    max_alerts: int = 0,
    extra_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> AlertmanagerServer:
    """Start Alertmanager (gossip off) routing everything to one receiver; with `webhook_url`
    that receiver is a v4 webhook, with `bearer_token` it sends `Authorization: Bearer ...`.
    Without `webhook_url` the receiver drops notifications (enough for the silences API)."""
    binary = find_binary("prometheus-alertmanager", "alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    data_dir = workdir / "data"

    receiver_doc: dict[str, Any] = {"name": receiver}
    if webhook_url:
        webhook: dict[str, Any] = {
            "url": webhook_url,
            "send_resolved": send_resolved,
            "max_alerts": max_alerts,
        }
        if bearer_token:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": bearer_token}}
        receiver_doc["webhook_configs"] = [webhook]
    config = {
        "global": {"resolve_timeout": resolve_timeout},
        "route": {
            "receiver": receiver,
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [receiver_doc],
    }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    # The config holds the bearer token: readable by the owner only.
    os.chmod(config_path, 0o600)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            "--cluster.listen-address=",
            *extra_args,
        ]

    process, port, log_path = _launch("alertmanager", workdir, argv, timeout=timeout)
    server = AlertmanagerServer(
        name="alertmanager",
        port=port,
        workdir=workdir,
        process=process,
        log_path=log_path,
        config_path=config_path,
    )
    _LIVE.add(server)
    return server


# --------------------------------------------------------------------------- webhook recorder


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    received_at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookRecorder:
    """A stdlib HTTP server on 127.0.0.1 that records every request and answers `status`
    (settable, e.g. 500 to watch Alertmanager retry). `url` is where to point a webhook."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorder._record(
                    RecordedRequest(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        received_at=time.monotonic(),
                    )
                )
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-recorder", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alertmanager"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], *, timeout: float = 30.0, what: str = "a request"
    ) -> RecordedRequest:
        """The first recorded request (past or future) for which `predicate` is true."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for request in self._requests:
                    if predicate(request):
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout:.0f}s waiting for {what}; "
                        f"{len(self._requests)} request(s) recorded"
                    )
                self._arrived.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT)

    def __enter__(self) -> WebhookRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- pytest fixtures


@pytest.fixture
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrometheusServer]]:
    """`prometheus_factory(**start_prometheus kwargs)`; every server it started is stopped at
    teardown, also when the test failed. Pass `workdir=` to choose the directory."""
    started: list[PrometheusServer] = []

    def factory(*, workdir: Path | None = None, **kwargs: Any) -> PrometheusServer:
        server = start_prometheus(workdir or tmp_path_factory.mktemp("prometheus"), **kwargs)
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def alertmanager_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., AlertmanagerServer]]:
    """`alertmanager_factory(**start_alertmanager kwargs)`; stops everything at teardown."""
    started: list[AlertmanagerServer] = []

    def factory(*, workdir: Path | None = None, **kwargs: Any) -> AlertmanagerServer:
        server = start_alertmanager(workdir or tmp_path_factory.mktemp("alertmanager"), **kwargs)
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def alertmanager(alertmanager_factory: Callable[..., AlertmanagerServer]) -> AlertmanagerServer:
    """An Alertmanager with no webhook: enough for the alerts and silences APIs."""
    return alertmanager_factory()


@pytest.fixture
def webhook_recorder() -> Iterator[WebhookRecorder]:
    with WebhookRecorder() as recorder:
        yield recorder
