"""Diagnostics against a real Prometheus (Debian's 2.42) holding backfilled history.

A week cannot be waited for, so `promtool tsdb create-blocks-from openmetrics` writes the
history into the TSDB before Prometheus starts (`start_prometheus(backfill=...)`): p99 latency
of three models over last week, the hour before the incident and the incident itself. The
comparisons read back through prometheus-api-client are then asserted word for word.

Failure paths use the real server too: a stopped Prometheus (connection refused), a frozen
one (SIGSTOP: the kernel accepts the connection, nobody answers), Prometheus's own query
timeout (503), a PromQL parse error (400) and a wrong base URL (404). How many HTTP requests
a failure cost is read from Prometheus's own `prometheus_http_requests_total`, so "retried"
and "not retried" are observed, not assumed.
"""

from __future__ import annotations

import io
import math
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import matplotlib.image
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.models.blocks import Block

from bot.diagnostics import (
    DiagnosticResult,
    PrometheusMetrics,
    Trend,
    Windows,
    diagnostics_blocks,
    expr_from_generator_url,
    graph_series,
    measure,
    render_graph,
    run_diagnostic,
)
from bot.errors import PermanentUpstreamError, RetryableUpstreamError
from tests.support.promstack import (
    AlertmanagerServer,
    PrometheusServer,
    alert_rule,
    rules_file,
    start_prometheus,
)

pytest_plugins = ["tests.support.promstack"]
pytestmark = pytest.mark.prometheus

METRIC = "model_p99_seconds"
SCRAPE = 15  # seconds between backfilled samples
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Timeline:
    """The incident started 20 minutes before `now` and is measured 15 minutes after its start
    (so the backfilled data reaches past the measuring time)."""

    now: datetime

    @property
    def started(self) -> datetime:
        return self.now - timedelta(minutes=20)

    @property
    def measured(self) -> datetime:
        return self.started + timedelta(minutes=15)

    def windows(self) -> Windows:
        return Windows.for_incident(self.started, now=self.measured)


def _samples(labels: str, start: datetime, end: datetime, value: Callable[[datetime], float]) -> list[str]:
    lines = []
    when = start
    while when < end:
        lines.append(f"{METRIC}{{{labels}}} {value(when)} {int(when.timestamp())}")
        when += timedelta(seconds=SCRAPE)
    return lines


def _history(tl: Timeline) -> str:
    """OpenMetrics: llama-3-8b 0.5 s last week, 0.6 s before the incident, 4.2 s since;
    mistral-7b a steady 0.2 s; new-model 0.3 s, deployed two hours ago (nothing last week)."""
    week_start, week_end = tl.measured - WEEK - timedelta(hours=2), tl.measured - WEEK + timedelta(hours=2)
    recent_start, recent_end = tl.started - timedelta(hours=2), tl.measured + timedelta(minutes=2)
    lines = [f"# HELP {METRIC} p99 request latency", f"# TYPE {METRIC} gauge"]
    llama = 'model="llama-3-8b",namespace="llm-prod"'
    mistral = 'model="mistral-7b",namespace="llm-prod"'
    new = 'model="new-model",namespace="llm-prod"'
    lines += _samples(llama, week_start, week_end, lambda _t: 0.5)
    lines += _samples(llama, recent_start, recent_end, lambda t: 0.6 if t < tl.started else 4.2)
    lines += _samples(mistral, week_start, week_end, lambda _t: 0.2)
    lines += _samples(mistral, recent_start, recent_end, lambda _t: 0.2)
    lines += _samples(new, recent_start, recent_end, lambda _t: 0.3)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tl() -> Timeline:
    return Timeline(now=datetime.now(UTC).replace(second=0, microsecond=0))


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, tl: Timeline) -> Iterator[PrometheusServer]:
    server = start_prometheus(tmp_path_factory.mktemp("diag-prom"), backfill=_history(tl))
    yield server
    server.stop()


@pytest.fixture
def metrics(prom: PrometheusServer) -> Iterator[PrometheusMetrics]:
    with PrometheusMetrics(prom.url, timeout=10, attempts=3, backoff=0.05) as client:
        yield client


def _requests_served(server: PrometheusServer, code: str, handler: str = "/api/v1/query") -> float:
    """Prometheus's own count of HTTP requests answered with `code` on `handler`."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "prometheus_http_requests":
            for sample in family.samples:
                if (
                    sample.name.endswith("_total")
                    and sample.labels.get("code") == code
                    and sample.labels.get("handler") == handler
                ):
                    return float(sample.value)
    return 0.0


def _validate(blocks: list[dict[str, object]]) -> None:
    assert 0 < len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- baselines


def test_comparison_with_backfilled_history_reads_as_words(metrics: PrometheusMetrics, tl: Timeline) -> None:
    comparisons = measure(metrics, METRIC, tl.windows(), unit="seconds")

    assert [c.labels["model"] for c in comparisons] == ["llama-3-8b", "new-model", "mistral-7b"]
    llama, new, mistral = comparisons
    assert (llama.current, llama.before, llama.last_week) == (4.2, 0.6, 0.5)
    assert llama.trends == (Trend.UP, Trend.UP)
    assert llama.text() == "4.2 s, up from 0.6 s before the incident and 0.5 s last week"
    assert new.text() == "300 ms, about the same as before the incident (300 ms); no data last week"
    assert mistral.text() == "200 ms, about the same as before the incident (200 ms) and last week (200 ms)"
    assert llama.labels == {"__name__": METRIC, "model": "llama-3-8b", "namespace": "llm-prod"}


def test_aggregated_query_and_rate_style_expression(metrics: PrometheusMetrics, tl: Timeline) -> None:
    # An expression with a range selector inside, evaluated as written at every step.
    result = run_diagnostic(
        metrics,
        title="Worst p99 over 5 minutes",
        query=f"max(max_over_time({METRIC}[5m]))",
        windows=tl.windows(),
        unit="seconds",
    )
    assert result.ok, result.error
    (only,) = result.comparisons
    assert only.labels == {}
    # The before window ends at the start; its last minutes do not see the incident yet.
    assert only.text() == "4.2 s, up from 0.6 s before the incident and 0.5 s last week"

    blocks = diagnostics_blocks([result])
    _validate(blocks)
    assert "*4.2 s*, up from 0.6 s before the incident and 0.5 s last week" in blocks[0]["text"]["text"]


def test_instant_result_types_and_special_values(metrics: PrometheusMetrics, tl: Timeline) -> None:
    (scalar,) = metrics.query("1 + 1", at=tl.measured)
    assert scalar.labels == {}
    assert scalar.values == [(tl.measured, 2.0)]

    nan, inf = metrics.query("0/0", at=tl.measured)[0], metrics.query("1/0", at=tl.measured)[0]
    assert math.isnan(nan.values[0][1])
    assert inf.values[0][1] == math.inf

    with pytest.raises(PermanentUpstreamError, match="returned the string 'foo', not a number"):
        metrics.query('"foo"')

    vector = metrics.query(f'{METRIC}{{model="mistral-7b"}}', at=tl.measured)
    assert [(s.labels["model"], s.last) for s in vector] == [("mistral-7b", 0.2)]


def test_range_query_returns_samples_per_step(metrics: PrometheusMetrics, tl: Timeline) -> None:
    start = tl.started - timedelta(minutes=2)
    series = metrics.query_range(
        f'{METRIC}{{model="llama-3-8b"}}', start, tl.started + timedelta(minutes=2), timedelta(minutes=1)
    )
    (llama,) = series
    assert [t for t, _ in llama.values] == [start + timedelta(minutes=i) for i in range(5)]
    assert [v for _, v in llama.values] == [0.6, 0.6, 4.2, 4.2, 4.2]

    (scalar,) = metrics.query_range("vector(3)", start, tl.started, timedelta(minutes=1))
    assert [v for _, v in scalar.values] == [3.0, 3.0, 3.0]


def test_graph_of_a_range_query_is_a_png(metrics: PrometheusMetrics, tl: Timeline) -> None:
    windows = tl.windows()
    series = graph_series(metrics, METRIC, windows)
    assert {s.labels["model"] for s in series} == {"llama-3-8b", "mistral-7b", "new-model"}

    png = render_graph(
        series,
        title="p99 latency",
        unit="seconds",
        started_at=windows.started_at,
        before=windows.before,
        window=windows.graph(),
    )
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2] == (500, 1000)


# --------------------------------------------------------------------------- failures


def test_bad_promql_is_permanent_with_prometheus_parse_error_and_not_retried(
    prom: PrometheusServer, metrics: PrometheusMetrics, tl: Timeline
) -> None:
    before = _requests_served(prom, "400")

    with pytest.raises(PermanentUpstreamError) as info:
        metrics.query(f"sum(rate({METRIC}[5m])")

    message = str(info.value)
    assert "parse error" in message
    assert "unclosed left parenthesis" in message
    assert prom.url in message
    assert _requests_served(prom, "400") == before + 1  # one attempt: never retried

    result = run_diagnostic(metrics, title="Broken", query="sum(", windows=tl.windows())
    assert not result.ok
    assert not result.retryable
    blocks = diagnostics_blocks([result])
    _validate(blocks)
    assert "Prometheus query failed:" in blocks[0]["text"]["text"]
    assert "parse error" in blocks[0]["text"]["text"]


def test_prometheus_query_timeout_is_retryable_and_retried(prom: PrometheusServer) -> None:
    # Prometheus's own `timeout` parameter set absurdly low: it answers 503 errorType timeout.
    before = _requests_served(prom, "503")
    with (
        PrometheusMetrics(prom.url, timeout=1e-6, attempts=2, backoff=0.01) as impatient,
        pytest.raises(RetryableUpstreamError) as info,
    ):
        impatient.query(f"count_over_time({METRIC}[30d])")

    message = str(info.value)
    assert f"Prometheus at {prom.url} answered 503 (timeout)" in message
    assert "timed out" in message
    assert _requests_served(prom, "503") == before + 2  # both attempts reached Prometheus


def test_frozen_prometheus_times_out_then_recovers(
    prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    server = prometheus_factory()
    client = PrometheusMetrics(server.url, timeout=0.2, connect_timeout=2, attempts=1)
    assert client.query("vector(1)")[0].last == 1.0

    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(RetryableUpstreamError) as info:
            client.query("vector(1)")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert str(info.value) == f"Prometheus at {server.url} is unreachable: no answer within 2.2s"

    # Back: the same client answers again (what the outbox's later retry relies on).
    assert client.query("vector(2)")[0].last == 2.0
    client.close()


def test_stopped_prometheus_is_retryable_naming_url_without_credentials(
    prometheus_factory: Callable[..., PrometheusServer],
    tl: Timeline,
) -> None:
    server = prometheus_factory()
    with_credentials = server.url.replace("http://", "http://alice:s3cret-pw@")
    client = PrometheusMetrics(with_credentials, timeout=5, attempts=2, backoff=0.01)
    assert client.url == server.url
    assert client.query("vector(1)")[0].last == 1.0  # basic auth is sent; Prometheus ignores it
    server.stop()

    with pytest.raises(RetryableUpstreamError) as info:
        client.query("vector(1)")
    message = str(info.value)
    assert message == f"Prometheus at {server.url} is unreachable: cannot connect (connection refused)"
    assert "s3cret" not in message

    result = run_diagnostic(client, title="p99", query="up", windows=tl.windows())
    assert result.retryable
    assert result.error == message
    assert "s3cret" not in repr(result)
    client.close()


def test_wrong_base_url_is_permanent_with_a_hint(prom: PrometheusServer) -> None:
    with (
        PrometheusMetrics(prom.url + "/api/v1", attempts=3) as client,
        pytest.raises(PermanentUpstreamError, match=r"answered 404: 404 page not found \(is PROMETHEUS_URL"),
    ):
        client.query("up")


# --------------------------------------------------------------------------- alert expression


def test_alert_expression_from_a_real_generator_url_is_graphed(
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    tmp_path: Path,
    tl: Timeline,
) -> None:
    """Prometheus -> Alertmanager: the generatorURL Prometheus 2.42 really writes holds the
    rule's expression; graphing it against the data gives the incident's shape."""
    expr = f'max_over_time({METRIC}{{model="llama-3-8b"}}[30m]) > 1'
    am = alertmanager_factory()
    alerting = prometheus_factory(
        workdir=tmp_path / "alerting",
        backfill=_history(tl),
        rules=rules_file(alert_rule("ModelSlow", expr, labels={"severity": "page"})),
        alertmanager_url=am.url,
    )
    alert = am.wait_for_alert({"alertname": "ModelSlow"}, timeout=60)
    assert alert["generatorURL"].startswith(alerting.url + "/graph?g0.expr=")
    assert expr_from_generator_url(alert["generatorURL"]) == expr

    windows = tl.windows()
    with PrometheusMetrics(alerting.url) as client:
        series = graph_series(client, expr, windows)
    (llama,) = series
    assert llama.last == 4.2
    png = render_graph(series, title=f"ModelSlow: {expr}", unit="seconds", started_at=tl.started)
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2] == (500, 1000)

    result = DiagnosticResult.from_series("Alert expression", expr, series, unit="seconds")
    _validate(diagnostics_blocks([result]))
