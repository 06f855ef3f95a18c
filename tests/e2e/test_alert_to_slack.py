"""End to end: a model server's metric goes bad, real Prometheus fires a rule, real
Alertmanager posts to the bot, the incident appears in Slack; the metric recovers and the
incident resolves. Nothing in between is simulated but Slack itself."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import WEBHOOK_TOKEN, RunningBot, wait_until
from tests.support.promstack import AlertmanagerServer, PrometheusServer, alert_rule, rules_file

QUEUE_RULE = alert_rule(
    "VLLMRequestQueueBacklog",
    'sum by (namespace, model_name) (vllm:num_requests_waiting{namespace="llm-prod"}) > 10',
    labels={"severity": "critical"},
    annotations={
        "summary": "vLLM queue backlog for {{ $labels.model_name }}",
        "description": "{{ $value }} requests are waiting in {{ $labels.namespace }}.",
        "runbook_url": "https://runbooks.example/vllm-queue",
    },
)


@pytest.fixture
def exporter() -> Iterator[ModelServingExporter]:
    with ModelServingExporter() as running:
        yield running


def test_metric_to_slack_incident_and_back(
    bot: RunningBot,
    slack: SlackStandIn,
    exporter: ModelServingExporter,
    alertmanager_factory: Callable[..., AlertmanagerServer],
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    alertmanager = alertmanager_factory(
        webhook_url=f"{bot.url}/alertmanager", bearer_token=WEBHOOK_TOKEN, group_by=("alertname", "namespace")
    )
    prometheus = prometheus_factory(
        scrape_targets=[exporter.target], rules=rules_file(QUEUE_RULE), alertmanager_url=alertmanager.url
    )
    prometheus.wait_for_targets_up(timeout=60)

    exporter.set_scenario("vllm_queue")
    (post,) = slack.wait_for("chat.postMessage", timeout=90)
    blocks = json.dumps(post.params["blocks"], ensure_ascii=False)
    assert "VLLMRequestQueueBacklog: vLLM queue backlog for meta-llama/Llama-3.1-8B-Instruct" in blocks
    assert "`namespace=llm-prod`" in blocks
    (incident,) = bot.incidents()
    assert incident["severity"] == "critical"
    assert incident["receiver"] == "incident-bot"
    detail = bot.incident(incident["id"])
    assert detail["alerts"][0]["generator_url"].startswith(prometheus.url)

    exporter.set_scenario("healthy")
    wait_until(lambda: bot.incident(incident["id"])["status"] == "resolved", timeout=90, message="resolution")
    ts = bot.incident(incident["id"])["ts"]
    wait_until(
        lambda: slack.message("C0INCIDENTS", ts).text.startswith(":white_check_mark: RESOLVED"),
        message="root message shows the resolution",
    )
    assert len([m for m in slack.messages("C0INCIDENTS")]) == 1
