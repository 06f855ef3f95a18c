"""Diagnostics without a server: units, comparisons and their wording, the Slack table within
Slack's limits (checked by slack-sdk's own validators and the Slack stand-in's), generatorURL
parsing on real payloads, and the PNG graph read back by matplotlib."""

from __future__ import annotations

import io
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import matplotlib.image
import pytest
from slack_sdk.models.blocks import Block

from bot.diagnostics import (
    Comparison,
    DiagnosticResult,
    GraphsUnavailable,
    PrometheusMetrics,
    Series,
    Trend,
    Windows,
    auto_step,
    compare,
    diagnostics_blocks,
    diagnostics_message,
    diagnostics_text,
    expr_from_generator_url,
    format_value,
    format_values,
    graphs_available,
    render_graph,
    safe_url,
    trend,
)
from bot.errors import ConfigError
from bot.sandbox.slack_blockkit import check_blocks

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads"
T = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _valid(blocks: list[dict[str, Any]]) -> None:
    """Accepted by slack-sdk's model validators and by the Slack stand-in's checks."""
    assert len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()  # type: ignore[union-attr]
    assert check_blocks(blocks) == []


def _all_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.42, "seconds", "420 ms"),
        (4.2, "seconds", "4.2 s"),
        (180, "seconds", "3 min"),
        (5400, "seconds", "1.5 h"),
        (0.0005, "seconds", "500 µs"),
        (0, "seconds", "0 s"),
        (59.99, "seconds", "1 min"),
        (420, "milliseconds", "420 ms"),
        (1500, "microseconds", "1.5 ms"),
        (0.05, "ratio", "5%"),
        (0.9999, "ratio", "99.99%"),
        (0.999996, "ratio", "99.999%"),
        (1.0, "ratio", "100%"),
        (45.23, "percent", "45.2%"),
        (1.5 * 2**30, "bytes", "1.5 GiB"),
        (300 * 2**20, "bytes", "300 MiB"),
        (512, "mebibytes", "512 MiB"),
        (12.345, "requests/s", "12.3 req/s"),
        (1234, "requests/s", "1.23k req/s"),
        (850, "tokens/s", "850 tok/s"),
        (0.67, "usd", "$0.67"),
        (0.0042, "usd", "$0.0042"),
        (1234.5, "usd", "$1,234"),
        (3.2, "usd/hour", "$3.20/h"),
        (12, "count", "12"),
        (123456, "count", "123k"),
        (71.5, "celsius", "71.5 °C"),
        (1350, "watts", "1.35 kW"),
        (999.7, "none", "1k"),
        (12, "widgets", "12 widgets"),
        (-0.3, "ratio", "-30%"),
    ],
)
def test_values_read_as_people_say_them(value: float, unit: str, expected: str) -> None:
    assert format_value(value, unit) == expected


def test_special_values() -> None:
    assert format_value(None, "seconds") == "no data"
    assert format_value(math.nan, "seconds") == "NaN"
    assert format_value(math.inf, "seconds") == "+Inf"
    assert format_value(-math.inf, "ratio") == "-Inf"


def test_values_compared_together_share_one_scale() -> None:
    assert format_values([4.2, 0.6, 0.5], "seconds") == ["4.2 s", "0.6 s", "0.5 s"]
    assert format_values([1.5 * 2**30, 300 * 2**20], "bytes") == ["1.5 GiB", "0.293 GiB"]
    # Too far apart to share a scale: each keeps its own.
    assert format_values([240, 0.0002], "seconds") == ["4 min", "200 µs"]
    assert format_values([None, 0.6, math.nan], "seconds") == ["no data", "600 ms", "NaN"]


# --------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize(
    ("current", "baseline", "unit", "expected"),
    [
        (4.2, 0.6, "seconds", Trend.UP),
        (0.1, 0.6, "seconds", Trend.DOWN),
        (0.21, 0.2, "seconds", Trend.SAME),  # within 10% of the larger value
        (0.23, 0.2, "seconds", Trend.UP),  # 13%
        (0.95, 0.999, "ratio", Trend.DOWN),  # only 5% relative, but 4.9 percentage points
        (0.0015, 0.001, "ratio", Trend.UP),  # 0.05 points, but +50%
        (99.5, 99.9, "percent", Trend.SAME),  # 0.4 points and 0.4%
        (0.0, 0.0, "count", Trend.SAME),
        (3.0, 0.0, "count", Trend.UP),
        (math.inf, 1.0, "seconds", Trend.UP),
        (1.0, None, "seconds", Trend.NO_DATA),
        (None, 1.0, "seconds", Trend.NO_DATA),
        (math.nan, 1.0, "seconds", Trend.NO_DATA),
    ],
)
def test_trend_thresholds(current: float | None, baseline: float | None, unit: str, expected: Trend) -> None:
    assert trend(current, baseline, unit) == expected


@pytest.mark.parametrize(
    ("values", "unit", "text"),
    [
        ((4.2, 0.6, 0.5), "seconds", "4.2 s, up from 0.6 s before the incident and 0.5 s last week"),
        ((0.1, 0.6, 4.1), "seconds", "0.1 s, down from 0.6 s before the incident and 4.1 s last week"),
        (
            (0.2, 0.2, 0.21),
            "seconds",
            "200 ms, about the same as before the incident (200 ms) and last week (210 ms)",
        ),
        ((4.2, 0.6, None), "seconds", "4.2 s, up from 0.6 s before the incident; no data last week"),
        ((4.2, None, None), "seconds", "4.2 s; no data before the incident or last week"),
        (
            (0.0015, 0.001, 0.0015),
            "ratio",
            "0.15%, up from 0.1% before the incident, about the same as last week (0.15%)",
        ),
        ((None, 0.6, 0.5), "seconds", "no data now; 600 ms before the incident and 500 ms last week"),
        ((0.67, 0.02, 0.021), "usd", "$0.67, up from $0.02 before the incident and $0.021 last week"),
    ],
)
def test_comparison_wording(values: tuple[float | None, ...], unit: str, text: str) -> None:
    current, before, last_week = values
    assert Comparison({}, current, before, last_week, unit).text() == text


def _range(labels: dict[str, str], *values: float, start: datetime = T) -> Series:
    return Series(labels, [(start + timedelta(minutes=i), v) for i, v in enumerate(values)])


def test_compare_matches_series_by_labels_and_ranks_by_current_value() -> None:
    a, b, gone = {"model": "a"}, {"model": "b"}, {"model": "retired"}
    comparisons = compare(
        current=[_range(a, 1.0), _range(b, 9.0)],
        # Median, not mean: one spike does not move "before"; NaN samples are ignored.
        before=[_range(a, 1.0, 1.0, 50.0, math.nan), _range(b, 2.0, 2.0), _range(gone, 5.0)],
        last_week=[_range(b, 2.2)],
        unit="count",
    )
    assert [(c.labels, c.current, c.before, c.last_week) for c in comparisons] == [
        (b, 9.0, 2.0, 2.2),
        (a, 1.0, 1.0, None),
        (gone, None, 5.0, None),
    ]
    assert comparisons[1].text() == "1, about the same as before the incident (1); no data last week"


def test_single_series_is_compared_even_when_its_labels_changed() -> None:
    (only,) = compare(
        [_range({"pod": "vllm-7f9c-new"}, 4.2)],
        [_range({"pod": "vllm-7f9c-old"}, 0.6)],
        [_range({"pod": "vllm-55aa-lastweek"}, 0.5)],
        "seconds",
    )
    assert only.labels == {"pod": "vllm-7f9c-new"}
    assert only.text() == "4.2 s, up from 0.6 s before the incident and 0.5 s last week"


def test_windows_of_an_incident() -> None:
    now = T + timedelta(minutes=30)
    open_ = Windows.for_incident(T, now=now)
    assert open_.at == now
    assert open_.before == (T - timedelta(hours=1), T)
    assert open_.last_week == (
        now - timedelta(days=7, minutes=30),
        now - timedelta(days=7) + timedelta(minutes=30),
    )
    assert open_.graph() == (T - timedelta(hours=1), now)
    assert open_.graph(timedelta(hours=3)) == (now - timedelta(hours=3), now)

    resolved = Windows.for_incident(T, now=T + timedelta(hours=2), resolved_at=T + timedelta(minutes=10))
    assert resolved.at == T + timedelta(minutes=10)
    assert resolved.graph() == (T - timedelta(hours=1), T + timedelta(minutes=25))


def test_auto_step_is_round_and_within_prometheus_limit() -> None:
    assert auto_step(T - timedelta(hours=1), T) == timedelta(seconds=15)
    assert auto_step(T - timedelta(days=1), T) == timedelta(minutes=10)
    assert auto_step(T - timedelta(days=400), T, points=100_000).total_seconds() >= 400 * 86400 / 10_999


def test_safe_url_drops_credentials() -> None:
    assert safe_url("https://bob:pa55@prom.example:9090/prometheus") == "https://prom.example:9090/prometheus"
    assert safe_url("http://127.0.0.1:9090") == "http://127.0.0.1:9090"
    with pytest.raises(ConfigError, match="PROMETHEUS_URL must be an absolute http"):
        PrometheusMetrics("prometheus:9090")


# --------------------------------------------------------------------------- Slack table


def _latency(n: int, *, label_value: str = "", job: str = "vllm") -> DiagnosticResult:
    comparisons = [
        Comparison(
            {"model": f"model-{i:03d}{label_value}", "pod": f"model-{i:03d}-7f9c9d-xk2pq", "job": job},
            current=float(i),
            before=1.0,
            last_week=1.0 if i % 2 else None,
            unit="seconds",
        )
        for i in range(n)
    ]
    comparisons.sort(key=lambda c: -(c.current or 0))
    return DiagnosticResult(
        title="p99 latency",
        query="histogram_quantile(0.99, sum by (le, model, pod) "
        "(rate(vllm:e2e_request_latency_seconds_bucket[5m])))",
        unit="seconds",
        comparisons=tuple(comparisons),
    )


def test_table_shows_top_five_and_counts_the_rest() -> None:
    blocks = diagnostics_blocks([_latency(17)])
    _valid(blocks)
    section, context, note = blocks
    assert section["text"]["text"].startswith("*p99 latency* · 17 series, by model, pod\n")
    assert (
        "Top: `model-016` · `model-016-7f9c9d-xk2pq` at *16 s*, up from 1 s before the incident"
        in (section["text"]["text"])
    )
    fields = [f["text"] for f in section["fields"]]
    assert len(fields) == 10
    assert fields[0:2] == [
        "`model-016` · `model-016-7f9c9d-xk2pq`",
        "*16 s* ↑\n1 s before · no data last week",
    ]
    assert fields[2:4] == ["`model-015` · `model-015-7f9c9d-xk2pq`", "*15 s* ↑\n1 s before · 1 s last week"]
    assert context["elements"][0]["text"].endswith("· … and 12 more series")
    assert "vllm:e2e_request_latency_seconds_bucket" in context["elements"][0]["text"]
    assert "median over the hour before the incident" in note["elements"][0]["text"]


def test_table_names_series_only_by_labels_that_differ() -> None:
    (section, *_rest) = diagnostics_blocks([_latency(3)])
    text = _all_text([section])
    assert "vllm" not in text.replace("vllm:e2e", "")  # job is the same everywhere: not shown
    assert "by model, pod" in section["text"]["text"]


def test_single_series_is_one_sentence_without_table() -> None:
    result = DiagnosticResult(
        title="Error rate of *llama-3-8b*",
        query='sum(rate(errors_total{model="llama-3-8b"}[5m])) / sum(rate(requests_total[5m]))',
        unit="ratio",
        comparisons=(Comparison({}, 0.052, 0.001, 0.0012, "ratio"),),
    )
    blocks = diagnostics_blocks([result])
    _valid(blocks)
    assert blocks[0] == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "Error rate of *llama-3-8b*\n"
            "*5.2%*, up from 0.1% before the incident and 0.12% last week",
        },
    }


def test_label_values_are_escaped_and_cannot_break_out() -> None:
    comparisons = (
        Comparison({"model": "<!channel>", "team": "a&b"}, 2.0, 1.0, None, "count"),
        Comparison({"model": "x`y *bold*", "team": "<@U123>"}, 1.0, 1.0, None, "count"),
    )
    result = DiagnosticResult(title="Queue", query='queue{model="<!here>"}', comparisons=comparisons)
    blocks = diagnostics_blocks([result])
    _valid(blocks)
    text = _all_text(blocks)
    for raw in ("<!channel>", "<!here>", "<@U123>", "a&b"):
        assert raw not in text
    assert "`&lt;!channel&gt;` · `a&amp;b`" in text
    assert "`x\u02cby *bold*` · `&lt;@U123&gt;`" in text  # backtick replaced: the code span holds
    fallback = diagnostics_text([result])
    assert "<!channel>" not in fallback
    assert "<!" not in json.dumps(diagnostics_message([result]))


def test_limits_hold_with_500_series_and_huge_label_values() -> None:
    huge = "x" * 5000 + "<&>" * 300
    result = _latency(500, label_value=huge)
    blocks = diagnostics_blocks([result])
    _valid(blocks)
    section = blocks[0]
    assert len(section["text"]["text"]) <= 3000
    assert all(len(f["text"]) <= 2000 for f in section["fields"])
    assert "… and 495 more series" in _all_text(blocks)
    # Cut in the middle: both ends of a long value survive.
    assert "`model-499xxxxx" in section["fields"][0]["text"]
    assert "…" in section["fields"][0]["text"]


def test_fifty_block_limit_with_many_diagnostics() -> None:
    results = [_latency(3) for _ in range(40)]
    blocks = diagnostics_blocks(results)
    _valid(blocks)
    assert len(blocks) == 50
    text = _all_text(blocks[-2:])
    assert "… and 16 more diagnostics not shown" in text
    assert "median over the hour before" in text


def test_failed_query_says_which_and_why() -> None:
    failed = DiagnosticResult(
        title="GPU utilisation",
        query="avg(DCGM_FI_DEV_GPU_UTIL)",
        unit="percent",
        error='Prometheus at http://prom:9090 rejected the query: 1:5: parse error: unexpected "<"',
    )
    ok = DiagnosticResult(title="Empty", query="up == 0", comparisons=())
    message = diagnostics_message([failed, ok])
    _valid(message["blocks"])
    first = message["blocks"][0]["text"]["text"]
    assert first == (
        ":warning: *GPU utilisation*\nPrometheus query failed: Prometheus at http://prom:9090 "
        'rejected the query: 1:5: parse error: unexpected "&lt;"'
    )
    assert message["blocks"][1]["elements"][0]["text"] == "`avg(DCGM_FI_DEV_GPU_UTIL)`"
    assert message["blocks"][2]["text"]["text"] == "*Empty*\n_No data: the query returned no series._"
    assert message["text"] == (
        "GPU utilisation: Prometheus query failed: Prometheus at http://prom:9090 rejected the query: "
        '1:5: parse error: unexpected "&lt;"\nEmpty: no data'
    )


# --------------------------------------------------------------------------- generatorURL


def _payload_generator_urls() -> list[str]:
    urls: list[str] = []
    for path in sorted(PAYLOADS.glob("*.json")):
        body = json.loads(path.read_text())
        alerts = body.get("alerts", []) if isinstance(body, dict) else body
        urls += [a["generatorURL"] for a in alerts if isinstance(a, dict) and a.get("generatorURL")]
    return urls


def test_generator_urls_of_real_payloads() -> None:
    found = {expr_from_generator_url(url) for url in _payload_generator_urls()}
    assert found == {
        "vector(1)",
        "vector(666)",
        'probe_success{job="blackbox-icmp"} == 0',
        'kube_deployment_spec_replicas{namespace="eric-eo-cm-ci406"} != '
        'kube_deployment_status_replicas_available{namespace="eric-eo-cm-ci406"}',
    }


@pytest.mark.parametrize(
    ("url", "expr"),
    [
        ("http://localhost:9090/graph?g0.expr=vector%28666%29&g0.tab=1", "vector(666)"),
        (  # Prometheus 2/3: url.QueryEscape turns spaces into "+"
            "http://prom:9090/graph?g0.expr=rate%28x_total%5B5m%5D%29+%3E+0.5+%2B+1&g0.tab=1",
            "rate(x_total[5m]) > 0.5 + 1",
        ),
        ("/metrics/viewer/graph?g0.expr=up+%3D%3D+0&g0.tab=1", "up == 0"),
        ("http://prom:9090/query?g0.expr=up&g0.tab=table", "up"),
        ("http://thanos/graph?g0.expr=b&g0.tab=1&g1.expr=c&g0.max_source_resolution=0s", "b"),
        ("http://prom:9090/graph?g0.expr=up&amp;g0.tab=1", "up"),
        # Prometheus 1.x: JSON in the fragment
        ("/graph#" + quote(json.dumps([{"expr": 'up{job="x"} == 0', "tab": 1}])), 'up{job="x"} == 0'),
        # VictoriaMetrics vmui
        (
            "http://vm:8428/vmui/#/?g0.expr=" + quote("sum(rate(x[5m])) > 1") + "&g0.range_input=1h",
            "sum(rate(x[5m])) > 1",
        ),
        # Grafana Explore (vmalert -external.alert.source), old and new state formats
        (
            "http://grafana/explore?orgId=1&left="
            + quote(json.dumps({"datasource": "VM", "queries": [{"expr": "sum(up)", "refId": "A"}]})),
            "sum(up)",
        ),
        (
            "http://grafana/explore?schemaVersion=1&panes="
            + quote(json.dumps({"x1": {"datasource": "p", "queries": [{"refId": "A", "expr": "up > 0"}]}})),
            "up > 0",
        ),
        ("http://vmalert:8880/vmalert/alert?group_id=1&alert_id=2", None),
        ("http://prom:9090/graph?g0.expr=&g0.tab=1", None),
        ("", None),
        (None, None),
    ],
)
def test_generator_url_variants(url: str | None, expr: str | None) -> None:
    assert expr_from_generator_url(url) == expr


# --------------------------------------------------------------------------- graph


def _series(count: int) -> list[Series]:
    out = []
    for i in range(count):
        values = [
            (
                T - timedelta(hours=1) + timedelta(seconds=30 * k),
                0.2 + 0.01 * i + (3.5 if k > 120 and i == 0 else 0),
            )
            for k in range(160)
            if not (i == 1 and 40 < k < 60)  # a gap: stays a gap
        ]
        values.append((T + timedelta(hours=1), math.inf))  # +Inf is left out, not drawn
        out.append(Series({"model": f"model-{i}", "pod": f"model-{i}-7f9c9d-xk2pq", "job": "vllm"}, values))
    return out


def _decode(png: bytes) -> Any:
    assert png.startswith(PNG_SIGNATURE)
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_graph_is_a_1000_by_500_png() -> None:
    windows = Windows.for_incident(T, now=T + timedelta(minutes=20), resolved_at=T + timedelta(minutes=15))
    png = render_graph(
        _series(12),
        title="p99 latency ($ per model)",
        unit="seconds",
        started_at=windows.started_at,
        resolved_at=windows.resolved_at,
        before=windows.before,
        window=windows.graph(),
    )
    image = _decode(png)
    assert image.shape[:2] == (500, 1000)
    assert image[0, 0, :3].tolist() == [1.0, 1.0, 1.0]  # light background


def test_graph_without_data_says_so() -> None:
    image = _decode(render_graph([], title="nothing", unit="ratio", started_at=T))
    assert image.shape[:2] == (500, 1000)


def test_graphs_unavailable_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    assert graphs_available()
    # The interpreter's own way to make a package unimportable, as if it were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not graphs_available()
    with pytest.raises(GraphsUnavailable, match=r"graphs disabled: install incident-bot\[graphs\]") as info:
        render_graph(_series(1), title="x")
    assert isinstance(info.value, ConfigError)


def test_graphs_render_concurrently_from_worker_threads() -> None:
    """Workers render graphs in parallel threads: no shared pyplot state to trip over."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        pngs = list(
            pool.map(lambda i: render_graph(_series(i + 1), title=f"graph {i}", unit="count"), range(3))
        )
    assert [_decode(png).shape[:2] for png in pngs] == [(500, 1000)] * 3
    assert len(set(pngs)) == 3
