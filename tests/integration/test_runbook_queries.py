"""The shipped runbooks and alert rules against a real Prometheus scraping the test fleet.

One Prometheus (Debian's binary) scrapes `ModelServingExporter` with every fault injected
("all") and evaluates `manifests/prometheus-rules.yaml`. Then:

* every diagnostic and recovery query of every shipped runbook, rendered for each of its
  example alerts, returns data through prometheus-api-client (what the bot uses);
* every scenario's alerts fire, on the scenario's target and nowhere else;
* each alert Prometheus actually fires gets the runbook its `runbook_url` names, renders
  with the real labels and annotations (including `current_replicas`, filled in by
  Prometheus's `query` template), and that rendering's queries return data too.

A second Prometheus checks the other direction: a healthy fleet fires nothing, and a
scenario switched on over HTTP makes its rule fire and clear.

To keep this fast, the rules are loaded with `for:` removed and the short `rate()`
windows compressed (`[5m]` -> `[10s]`, `[10m]` -> `[15s]`), and both Prometheus servers
warm up side by side until those windows are full: Prometheus extrapolates a rate over a
window longer than the data it has to a fraction of the real value, which would distort
absolute thresholds such as cost per 1,000 requests.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_api_client import PrometheusConnect

from bot.runbooks import AlertInfo, IncidentInfo, RunbookContext, load_runbooks, render_runbook
from bot.runbooks.render import RenderedRunbook
from bot.sandbox.exporter import SCENARIOS, ModelServingExporter
from tests.support.promstack import PrometheusServer, poll_until, start_prometheus

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
RULES = ROOT / "manifests" / "prometheus-rules.yaml"
DEADLINE = 90.0


def fast_rules() -> str:
    """The shipped rules with `for` removed and short rate windows compressed (see module doc)."""
    manifest = yaml.safe_load(RULES.read_text())
    groups = manifest["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("for", None)
            rule["expr"] = re.sub(r"\[5m\]", "[10s]", re.sub(r"\[10m\]", "[15s]", rule["expr"]))
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


FULL_WINDOW_SCRAPES = 16  # one scrape per second: the compressed 15s windows are full


def wait_for_scrapes(prometheus: PrometheusServer, count: int) -> None:
    def scraped() -> bool | None:
        result = prometheus.query("count_over_time(up[1m])")
        if result and float(result[0]["value"][1]) >= count:
            return True
        return None

    poll_until(scraped, timeout=DEADLINE, what=f"{count} scrapes")


@dataclass
class Stack:
    exporter: ModelServingExporter
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """ "all" (every fault) and "healthy" fleets, each scraped by its own Prometheus, warmed up together."""
    started: dict[str, Stack] = {}
    try:
        for scenario in ("all", "healthy"):
            exporter = ModelServingExporter(port=0, scenario=scenario).start()
            try:
                prometheus = start_prometheus(
                    tmp_path_factory.mktemp(f"prometheus-{scenario}"),
                    scrape_targets=[exporter.target],
                    rules=fast_rules(),
                )
            except BaseException:
                exporter.stop()
                raise
            started[scenario] = Stack(exporter, prometheus)
        for stack in started.values():
            stack.prometheus.wait_for_targets_up(timeout=60)
        for stack in started.values():
            wait_for_scrapes(stack.prometheus, FULL_WINDOW_SCRAPES)
        yield started
    finally:
        for stack in started.values():
            stack.prometheus.stop()
            stack.exporter.stop()


@pytest.fixture
def fleet(stacks: dict[str, Stack]) -> tuple[ModelServingExporter, PrometheusServer]:
    return stacks["all"].exporter, stacks["all"].prometheus


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one series with at least one finite value (an all-NaN quantile is no data)."""
    for series in result:
        values = series.get("values") or [series.get("value")]
        for pair in values:
            if pair and not math.isnan(float(pair[1])):
                return True
    return False


def run(client: PrometheusConnect, query: str, kind: str, window: timedelta | None) -> list[dict[str, Any]]:
    if kind == "instant":
        result: list[dict[str, Any]] = client.custom_query(query=query)
        return result
    end = datetime.now()
    span = window or timedelta(hours=1)
    step = max(1, int(span.total_seconds() // 120))
    ranged: list[dict[str, Any]] = client.custom_query_range(
        query=query, start_time=end - span, end_time=end, step=str(step)
    )
    return ranged


def queries_of(rendered: RenderedRunbook) -> list[tuple[str, str, str, timedelta | None]]:
    out: list[tuple[str, str, str, timedelta | None]] = [
        (f"diagnostics: {d.title}", d.query, d.type, d.range) for d in rendered.diagnostics
    ]
    if rendered.recovery_query:
        out.append(("recovery_query", rendered.recovery_query, "instant", None))
    return out


def wait_for_data(
    client: PrometheusConnect, pending: dict[str, tuple[str, str, timedelta | None]]
) -> dict[str, str]:
    """Run every query until it returns data or the deadline passes; the ones that never did."""
    deadline = time.monotonic() + DEADLINE
    while pending and time.monotonic() < deadline:
        for key, (query, kind, window) in list(pending.items()):
            if has_data(run(client, query, kind, window)):
                del pending[key]
        if pending:
            time.sleep(1)
    return {key: query for key, (query, _kind, _window) in pending.items()}


def test_every_shipped_runbook_query_returns_data(
    fleet: tuple[ModelServingExporter, PrometheusServer],
) -> None:
    _exporter, prometheus = fleet
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    runbooks = load_runbooks(RUNBOOKS)
    pending: dict[str, tuple[str, str, timedelta | None]] = {}
    for runbook in runbooks:
        assert runbook.examples, f"{runbook.name} ships without examples"
        for index, example in enumerate(runbook.examples):
            rendered = render_runbook(runbook, RunbookContext.for_example(example))
            for what, query, kind, window in queries_of(rendered):
                pending[f"{runbook.path.name} example {index} {what}"] = (query, kind, window)
    assert len(pending) > 100  # every runbook contributes several queries per example
    missing = wait_for_data(client, pending)
    assert not missing, "queries without data:\n" + "\n".join(f"{k}: {q}" for k, q in missing.items())


def expected_alerts() -> list[tuple[str, Mapping[str, str]]]:
    return [(alert, scenario.target) for scenario in SCENARIOS.values() for alert in scenario.alerts]


def is_expected(labels: Mapping[str, str]) -> bool:
    return any(
        labels.get("alertname") == name and all(labels.get(k) == v for k, v in target.items())
        for name, target in expected_alerts()
    )


def test_every_scenario_fires_its_alerts_on_its_target_only(
    fleet: tuple[ModelServingExporter, PrometheusServer],
) -> None:
    _exporter, prometheus = fleet
    wanted = expected_alerts()
    assert len({name for name, _ in wanted}) >= 30

    def all_firing() -> list[dict[str, Any]] | None:
        firing = [a for a in prometheus.alerts() if a["state"] == "firing"]
        for name, target in wanted:
            if not any(
                a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in target.items())
                for a in firing
            ):
                return None
        return firing

    firing = poll_until(all_firing, timeout=DEADLINE, what="every scenario's alerts to fire")
    unexpected = [a["labels"] for a in prometheus.alerts() if not is_expected(a["labels"])]
    assert not unexpected, f"alerts outside the scenarios' targets: {unexpected}"
    for alert in firing:
        labels = alert["labels"]
        assert labels["severity"] in {"info", "warning", "critical"}
        assert "namespace" in labels or "hostname" in labels, labels
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["runbook_url"].endswith(".yaml")


def test_real_alerts_get_their_runbook_and_its_queries_return_data(
    fleet: tuple[ModelServingExporter, PrometheusServer],
) -> None:
    _exporter, prometheus = fleet
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    runbooks = load_runbooks(RUNBOOKS)
    names = {name for name, _ in expected_alerts()}

    def firing_alerts() -> list[dict[str, Any]] | None:
        firing = [a for a in prometheus.alerts() if a["state"] == "firing"]
        return firing if names <= {a["labels"]["alertname"] for a in firing} else None

    alerts = poll_until(firing_alerts, timeout=DEADLINE, what="the scenario alerts to fire")
    pending: dict[str, tuple[str, str, timedelta | None]] = {}
    scale_buttons = 0
    for number, alert in enumerate(alerts, start=1):
        labels, annotations = alert["labels"], alert["annotations"]
        runbook = runbooks.match(labels)
        assert runbook is not None, f"no runbook for {labels}"
        assert annotations["runbook_url"].endswith(f"/{runbook.path.name}"), (
            labels["alertname"],
            runbook.name,
        )
        started = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00"))
        info = AlertInfo(labels=labels, annotations=annotations, status="firing", starts_at=started)
        incident = IncidentInfo(
            key=f"INC-{number}",
            number=number,
            severity=labels["severity"],
            title=annotations["summary"],
            status="triggered",
            started_at=started,
        )
        rendered = render_runbook(runbook, RunbookContext(alert=info, incident=incident, alerts=(info,)))
        assert rendered.steps
        assert rendered.actions
        scale_buttons += sum(1 for a in rendered.actions if a.action == "scale")
        for what, query, kind, window in queries_of(rendered):
            pending[f"{labels['alertname']} {what}"] = (query, kind, window)
    # Prometheus filled `current_replicas` with its `query` template function, so the
    # runbooks could offer scale buttons with a concrete replica count.
    assert scale_buttons >= 5
    missing = wait_for_data(client, pending)
    assert not missing, "queries without data:\n" + "\n".join(f"{k}: {q}" for k, q in missing.items())


def test_healthy_fleet_fires_nothing_and_a_scenario_switched_over_http_fires(
    stacks: dict[str, Stack],
) -> None:
    exporter, prometheus = stacks["healthy"].exporter, stacks["healthy"].prometheus
    # The fixture waited until every (compressed) window is full of healthy data, and the
    # rules were evaluated once a second all along.
    assert prometheus.alerts() == []

    answer = httpx.post(f"{exporter.url}/scenario/gpu_xid", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["active"] == ["gpu_xid"]
    alert = prometheus.wait_for_alert("GPUXidCritical", "firing", timeout=DEADLINE)
    assert alert["labels"]["hostname"] == "gpu-node-b"
    assert alert["labels"]["gpu"] == "0"
    assert alert["labels"]["deployment"] == "triton-vision"
    assert float(alert["value"]) == 79

    assert httpx.post(f"{exporter.url}/scenario/healthy", timeout=10).status_code == 200
    prometheus.wait_for_alert("GPUXidCritical", "inactive", timeout=DEADLINE)
    assert prometheus.alerts() == []
