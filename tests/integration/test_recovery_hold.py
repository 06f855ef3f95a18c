"""The recovery check after an action honours the alert rule's `for:`: the alert's condition
has to stay clear that long (read from the real Prometheus's rules API) before the bot says the
service recovered; one clear poll is not enough."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from tests.support.actions import TARGET, Harness, seed_llama, write_policy
from tests.support.botserver import make_settings, run_bot, wait_until
from tests.support.promstack import PrometheusServer, alert_rule, rules_file, start_prometheus
from tests.support.slack_requests import SlackSender

pytestmark = pytest.mark.prometheus

LLAMA_P99 = (
    "histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
    '{namespace="llm-prod", model_name="meta-llama/Llama-3.1-8B-Instruct"}[5s]))) > 20'
)
HOLD_SECONDS = 15


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ModelServingExporter, PrometheusServer]]:
    with ModelServingExporter(scenario="vllm_latency") as exporter:
        rules = rules_file(alert_rule("VLLMHighE2ELatency", LLAMA_P99, for_=f"{HOLD_SECONDS}s"))
        prometheus = start_prometheus(tmp_path / "prometheus", scrape_targets=[exporter.target], rules=rules)
        try:
            prometheus.wait_for_targets_up(timeout=60)
            yield exporter, prometheus
        finally:
            prometheus.stop()


def rule_query(prometheus: PrometheusServer) -> str:
    """The rule's expression as Prometheus prints it: what an alert's generatorURL carries."""
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
    (rule,) = groups[0]["rules"]
    assert rule["duration"] == HOLD_SECONDS
    return str(rule["query"])


def test_recovery_waits_for_the_condition_to_stay_clear_for_the_rules_for(
    tmp_path: Path, slack: SlackStandIn, fleet: tuple[ModelServingExporter, PrometheusServer]
) -> None:
    exporter, prometheus = fleet
    query = rule_query(prometheus)
    wait_until(lambda: prometheus.query(query), timeout=60, message="the alert's condition to hold")
    with KubeStandIn() as kube:
        seed_llama(kube)
        settings = make_settings(
            tmp_path,
            slack.url,
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            policy_file=write_policy(tmp_path),
            prometheus_url=prometheus.url,
            verify_seconds=90,
        )
        with run_bot(settings) as bot:
            harness = Harness(bot, slack, kube, SlackSender(bot.url, slack))
            incident = harness.open_incident(
                generator_url=f"{prometheus.url}/graph?g0.expr={quote(query)}&g0.tab=1"
            )
            harness.command("/scale", f"{TARGET} 3")
            harness.wait_thread(incident, "Watching *VLLMHighE2ELatency* for up to 90 s")
            exporter.set_scenario("healthy")

            wait_until(lambda: not prometheus.query(query), timeout=60, message="the condition to clear")
            cleared = harness.records()[0].result or {}
            assert "verification" not in cleared  # clear for a moment is not recovered yet

            recovered = harness.wait_thread(incident, "Recovered", timeout=80)
            text = html.unescape(recovered.text)
            seconds = re.search(r"recovered: .*, (\d+) s after the action", text)
            assert seconds is not None, text
            assert int(seconds.group(1)) >= HOLD_SECONDS
            check = harness.wait_record(lambda r: "verification" in (r.result or {})).result["verification"]
            assert check["recovered"] is True
