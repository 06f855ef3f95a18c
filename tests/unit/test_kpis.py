"""Model KPIs without a server: the models file's file:line errors, windows, the digest's
schedule, `/model` parsing, the scorecard arithmetic, and how scorecards read in Slack."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.errors import ConfigError
from bot.kpis.digest import DigestSchedule
from bot.kpis.discovery import deployment_of_pod
from bot.kpis.incident_stats import IncidentStats
from bot.kpis.models_file import ModelsFile, ModelsFileError
from bot.kpis.owner_routing import is_quality_alert
from bot.kpis.scorecard import Scorecard, cost_per_1k, error_ratio, total_requests
from bot.kpis.service import KpiReport
from bot.kpis.window import Window, WindowError
from bot.slack.commands import UsageError
from bot.slack.kpi_blocks import digest_message, model_list, scorecard_message
from bot.slack.kpi_listeners import parse_model_command

GOOD = """\
models:
  - model: meta-llama/Llama-3.1-8B-Instruct
    namespace: llm-prod
    display_name: Llama chat
    owners: [U0123ABCD, S04LLMTEAM]
    owners_channel: C0LLMOWNERS
    slo: {uptime_pct: 99.5, latency_p99_seconds: 4}
    gpu_hour_usd: 2.5
    queries:
      drift_score: max(last_over_time(my_drift{model="llama"}[{window}]))
"""


def test_a_valid_models_file_loads() -> None:
    models = ModelsFile.from_text(GOOD)
    spec = models.spec_for("meta-llama/Llama-3.1-8B-Instruct", "llm-prod")
    assert spec is not None
    assert spec.slo.uptime_pct == 99.5
    assert spec.owners == ("U0123ABCD", "S04LLMTEAM")
    assert models.spec_for("meta-llama/Llama-3.1-8B-Instruct", "llm-staging") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("    gpu_hour_usd: 2.5\n", "    gpu_hour_usd: -1\n"),
            "models.yaml:8: models[0].gpu_hour_usd: Input should be greater than 0",
        ),
        (
            GOOD.replace("owners: [U0123ABCD", "owners: [alice"),
            "models.yaml:5: models[0].owners: owner 'alice' is not a Slack user ID",
        ),
        (
            GOOD.replace("owners_channel: C0LLMOWNERS", "owners_channel: '#llm'"),
            "models.yaml:6: models[0].owners_channel",
        ),
        (
            GOOD.replace("      drift_score:", "      drift:"),
            "models.yaml:10: models[0].queries: unknown KPI 'drift'",
        ),
        (
            GOOD.replace("    display_name:", "    displayname:"),
            "models.yaml:4: models[0]: unknown key 'displayname'",
        ),
        (GOOD.replace("uptime_pct: 99.5", "uptime_pct: 101"), "models.yaml:7: models[0].slo.uptime_pct"),
        ("models:\n  - namespace: x\n", "models.yaml:2: models[0]: missing required key 'model'"),
        (
            "models:\n  - model: churn\n    registered_model: [churn-xgb]\n",
            "models.yaml:3: models[0].registered_model: expected text, found a list",
        ),
        (
            "models:\n  - model: churn\n    alias: '@prod'\n",
            "models.yaml:3: models[0].alias: String should match pattern",
        ),
        ("models: [\n", "models.yaml:2: invalid YAML"),
        ("- a\n", "models.yaml:1: expected a mapping with 'models:'"),
        (
            GOOD + GOOD.split("models:\n")[1],
            "models.yaml:11: models[1]: 'meta-llama/Llama-3.1-8B-Instruct' is already",
        ),
    ],
)
def test_models_file_errors_name_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ModelsFileError) as caught:
        ModelsFile.from_text(text)
    assert any(line.startswith(expected) for line in caught.value.errors), caught.value.errors


def test_windows() -> None:
    assert Window.parse(None).text == "7d"
    assert Window.parse("1h30m").promql == "5400s"
    assert Window.parse("7d").step == 7 * 86400 // 500
    with pytest.raises(WindowError, match="'7 days' is not a Prometheus duration"):
        Window.parse("7 days")
    with pytest.raises(WindowError, match="'1s' is out of range"):
        Window.parse("1s")


def test_model_command_parsing() -> None:
    assert parse_model_command("").name is None
    assert parse_model_command("24h").name is None
    assert parse_model_command("24h").window.text == "24h"
    assert parse_model_command("llama").name == "llama"
    assert parse_model_command("llama").window.text == "7d"
    query = parse_model_command("Llama chat 30d")
    assert (query.name, query.window.text) == ("Llama chat", "30d")
    with pytest.raises(UsageError, match="'weeks' is not a Prometheus duration"):
        parse_model_command("llama 2 weeks")


def test_digest_schedules() -> None:
    weekly = DigestSchedule.parse("mon 09:00 Europe/Berlin")
    assert weekly.window.text == "7d"
    # Monday 2026-12-07 09:00 in Berlin is 08:00 UTC (winter time).
    assert weekly.latest_point(datetime(2026, 12, 7, 8, 30, tzinfo=UTC)) == datetime(
        2026, 12, 7, 8, 0, tzinfo=UTC
    )
    assert weekly.latest_point(datetime(2026, 12, 7, 7, 59, tzinfo=UTC)) == datetime(
        2026, 11, 30, 8, 0, tzinfo=UTC
    )
    # Summer time: 09:00 Berlin is 07:00 UTC.
    assert weekly.latest_point(datetime(2026, 7, 6, 7, 1, tzinfo=UTC)) == datetime(
        2026, 7, 6, 7, 0, tzinfo=UTC
    )
    daily = DigestSchedule.parse("daily 18:30")
    assert daily.window.text == "1d"
    assert daily.latest_point(datetime(2026, 12, 6, 18, 29, tzinfo=UTC)) == datetime(
        2026, 12, 5, 18, 30, tzinfo=UTC
    )
    every = DigestSchedule.parse("every 6h")
    assert every.latest_point(datetime(2026, 12, 6, 13, 0, tzinfo=UTC)) == datetime(
        2026, 12, 6, 12, 0, tzinfo=UTC
    )
    for bad, message in (
        ("monday 09:00", "unknown day 'monday'"),
        ("mon 9am", "expected a time of day"),
        ("mon 09:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("every 1s", "at least every 10s"),
    ):
        with pytest.raises(ConfigError, match=message):
            DigestSchedule.parse(bad)


def test_arithmetic() -> None:
    assert total_requests(20, 5, apart=True) == 25
    assert total_requests(10, 1, apart=False) == 10
    assert error_ratio(10, None) == 0
    assert error_ratio(0, 1) is None
    assert cost_per_1k(gpu_hours=2, price=3, requests=36_000) == pytest.approx(6 / 36)
    assert cost_per_1k(gpu_hours=2, price=None, requests=36_000) is None


def test_deployment_from_pod_names() -> None:
    assert deployment_of_pod("vllm-llama-7c9d5b6f48-2xkqp") == "vllm-llama"
    assert deployment_of_pod("triton-0") == "triton"


def test_quality_alerts() -> None:
    assert is_quality_alert({"alertname": "ModelFeatureDriftHigh"})
    assert is_quality_alert({"alertname": "Anything", "category": "drift"})
    assert not is_quality_alert({"alertname": "VLLMHighE2ELatency"})


def card(**values: float | None) -> Scorecard:
    models = ModelsFile.from_text(GOOD)
    result = Scorecard(
        "meta-llama/Llama-3.1-8B-Instruct",
        "llm-prod",
        "vllm",
        "7d",
        spec=models.specs[0],
        incidents=IncidentStats(incidents=2, mtta_seconds=120, mttr_seconds=1800, critical_minutes=12.5),
    )
    result.values.update(values)
    return result


def report(*cards: Scorecard) -> KpiReport:
    return KpiReport(Window.parse("7d"), datetime(2026, 12, 6, tzinfo=UTC), list(cards), complete=True)


def text_of(message: dict[str, object]) -> str:
    blocks = message["blocks"]
    assert isinstance(blocks, list)
    return "\n".join(
        (b.get("text") or {}).get("text", "") + "".join(e.get("text", "") for e in b.get("elements", []))
        for b in blocks
    )


def test_scorecard_reads_with_trend_slo_and_reasons() -> None:
    one = card(uptime_pct=99.0, latency_p99_seconds=5.0, requests_per_second=12.0, error_ratio=0.01)
    one.previous.update(uptime_pct=99.9, latency_p99_seconds=2.0)
    one.missing["cost_per_1k_usd"] = "Prometheus did not answer within 2.5s"
    text = text_of(scorecard_message(one, report(one)))
    assert "uptime *99.00%* ↓ from 99.90% :warning: · SLO ≥ 99.5% :x:" in text
    assert "p99 latency *5 s* ↑ from 2 s :warning: · SLO ≤ 4 s :x:" in text
    assert "cost per 1k requests: not computed (Prometheus did not answer within 2.5s)" in text
    assert (
        "incidents *2* · median time to ack 2.0 min · to resolve 30.0 min · 12.5 min with a critical" in text
    )


def test_names_from_outside_are_escaped() -> None:
    evil = card(uptime_pct=100.0)
    evil.model = "<!channel> model"
    assert "<!channel>" not in text_of(model_list(report(evil)))
    assert "&lt;!channel&gt; model" in text_of(scorecard_message(evil, report(evil)))


def test_digest_puts_breaches_first() -> None:
    fine = card(uptime_pct=100.0, latency_p99_seconds=1.0)
    fine.model = "a-fine-model"
    fine.spec = None
    breaching = card(uptime_pct=97.0)
    text = text_of(digest_message(report(fine, breaching)))
    assert "2 models, 1 breaching an SLO" in text
    assert text.index("Llama chat") < text.index("a-fine-model")


def test_the_example_models_file_is_valid() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "manifests" / "models.example.yaml"
    models = ModelsFile.load(example)
    assert [s.model for s in models.specs] == ["meta-llama/Llama-3.1-8B-Instruct", "resnet50"]
