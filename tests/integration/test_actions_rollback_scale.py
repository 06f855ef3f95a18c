"""Rollback, scale and restart from Slack, end to end: signed slash commands and button clicks
into the real bot, the real `kubernetes` client against the Kubernetes stand-in, answers and
thread messages on the Slack stand-in, the timeline through the API."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlmodel import Session, select

from bot.actions.models import TargetLock
from bot.config import Settings
from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message
from tests.support.actions import (
    MODEL,
    NAME,
    NS,
    TARGET,
    Harness,
    model_version,
    seed_llama,
    write_policy,
)
from tests.support.botserver import run_bot, wait_until
from tests.support.promstack import PrometheusServer, start_prometheus
from tests.support.slack_requests import ALICE, BOB, SlackSender, answer_text, find_button

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as standin:
        yield standin


@pytest.fixture
def harness(
    tmp_path: Path, settings_for: Callable[..., Settings], slack: SlackStandIn, kube: KubeStandIn
) -> Iterator[Harness]:
    seed_llama(kube)
    settings = settings_for(
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        policy_file=write_policy(tmp_path),
        runbooks_dir=RUNBOOKS,
    )
    with run_bot(settings) as bot:
        yield Harness(bot, slack, kube, SlackSender(bot.url, slack))


def test_rollback_command_confirms_the_model_versions_and_rolls_back(harness: Harness) -> None:
    incident = harness.open_incident()

    sent = harness.command("/rollback", TARGET)
    confirmation = harness.answer(sent)
    text = harness.text(confirmation)
    assert f"Confirm: roll back `{TARGET}`" in text
    assert f"{MODEL} v14 -> v13" in text
    assert "revision 3 -> 2" in text
    confirm = next(
        e
        for b in confirmation.body["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["style"] == "danger"
    )
    assert confirm["confirm"]["text"]["text"].startswith(f"Roll back {TARGET}: {MODEL} v14 -> v13")
    assert len(confirm["confirm"]["text"]["text"]) <= 300
    assert harness.real_writes() == []  # nothing changes before the confirmation

    clicked = harness.click_answer("action_confirm", confirmation)
    done = harness.answer(clicked)
    assert "Confirmed" in harness.text(done)
    assert done.body["replace_original"] is True

    wait_until(lambda: model_version(harness.kube) == "v13", message="the Deployment back on v13")
    result = harness.wait_thread(incident, "roll back")
    assert f"{MODEL} v14 -> v13" in html.unescape(result.text)
    assert ":white_check_mark:" in json.dumps(result.blocks)
    assert len([r for r in harness.real_writes() if r.method == "PATCH"]) == 1

    done_event = harness.wait_event(incident, ": done,")
    assert done_event["actor"] == ALICE.id
    assert "Before: llm-prod/vllm-llama: 2/2 ready, revision 3, llama-3-8b v14" in done_event["text"]
    assert "After: llm-prod/vllm-llama: 2/2 ready, revision 4, llama-3-8b v13" in done_event["text"]
    assert any("alice confirmed" in e["text"] for e in harness.events(incident))
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert (record.kind, record.target, record.requested_by, record.incident_id) == (
        "rollback",
        TARGET,
        ALICE.id,
        incident["id"],
    )

    metrics = httpx.get(f"{harness.bot.url}/metrics").text
    assert 'incident_bot_actions_total{kind="rollback",outcome="succeeded"} 1.0' in metrics


def runbook_message(harness: Harness, incident: dict[str, Any]) -> Message:
    return harness.wait_thread(incident, "Runbook: ")


def test_runbook_button_rolls_back_after_confirmation(harness: Harness) -> None:
    incident = harness.open_incident(model_name=MODEL)
    runbook = runbook_message(harness, incident)
    _, button = find_button(runbook.blocks, "runbook_action:0")
    assert button["text"]["text"] == f"Roll back {NAME}"
    assert button["value"].isdigit()  # only the stored offer's id

    clicked = harness.click("runbook_action:0", runbook, user=BOB)
    confirmation = harness.answer(clicked)
    assert f"{MODEL} v14 -> v13" in harness.text(confirmation)
    done = harness.answer(harness.click_answer("action_confirm", confirmation, user=BOB))
    assert "Confirmed" in harness.text(done)

    wait_until(lambda: model_version(harness.kube) == "v13", message="rolled back to v13")
    harness.wait_thread(incident, f"<@{BOB.id}> *roll back `{TARGET}`*: done")
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert record.requested_by == BOB.id
    assert record.source.startswith("offer:")
    assert "runbook:vllm-latency@" in record.source
    # The offer itself stays on the message for the next responder.
    assert harness.records(id=int(button["value"]))[0].status == "offered"


def test_rollback_to_a_named_revision(harness: Harness) -> None:
    harness.open_incident()
    sent = harness.command("/rollback", f"{TARGET} 1")
    confirmation = harness.answer(sent)
    assert f"{MODEL} v14 -> v12" in harness.text(confirmation)
    assert "revision 3 -> 1" in harness.text(confirmation)
    harness.click_answer("action_confirm", confirmation)
    wait_until(lambda: model_version(harness.kube) == "v12", message="rolled back to v12")


def test_scale_up_runs_at_once_and_scale_down_asks_first(harness: Harness) -> None:
    incident = harness.open_incident(model_name=MODEL)
    runbook = runbook_message(harness, incident)
    assert "Roll back" in json.dumps(runbook.blocks)  # the scale button needs current_replicas

    sent = harness.command("/scale", f"{TARGET} 4")
    assert "Running: *scale `llm-prod/vllm-llama`* (replicas 2 -&gt; 4)" in json.dumps(
        harness.answer(sent).body
    )
    wait_until(lambda: harness.kube.deployment(NS, NAME)["spec"]["replicas"] == 4, message="4 replicas")
    patches = [r for r in harness.real_writes() if r.path.endswith("/scale")]
    assert [p.body for p in patches] == [{"spec": {"replicas": 4}}]
    harness.wait_thread(incident, "replicas 2 -> 4")

    down = harness.command("/scale", f"{TARGET} 1")
    confirmation = harness.answer(down)
    assert "Confirm: scale" in harness.text(confirmation)
    assert "replicas 4 -> 1" in harness.text(confirmation)
    assert "PATCH /apis/apps/v1/namespaces/llm-prod/deployments/vllm-llama/scale" in harness.text(
        confirmation
    )
    harness.click_answer("action_confirm", confirmation)
    wait_until(lambda: harness.kube.deployment(NS, NAME)["spec"]["replicas"] == 1, message="1 replica")


def test_scale_up_of_a_gpu_workload_says_when_the_gpus_do_not_fit(harness: Harness) -> None:
    kube = harness.kube
    kube.add_node("gpu-0", gpus=8)
    kube.add_deployment(
        NS, "vllm-llama-70b", image="vllm/vllm-openai:v0.6.3", model="llama-3-70b", gpus_per_pod=4, replicas=2
    )

    sent = harness.command("/scale", f"{NS}/vllm-llama-70b 4")
    confirmation = harness.answer(sent)
    text = harness.text(confirmation)
    assert "replicas 2 -> 4" in text
    assert "GPU check: 2 more pod(s) x 4 nvidia.com/gpu = 8 needed; 0 free of 8 allocatable" in text
    assert "does NOT fit" in text
    assert "not enough allocatable nvidia.com/gpu for the new replicas" in text
    confirm = next(e for b in confirmation.body["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert "not enough allocatable nvidia.com/gpu" in confirm["confirm"]["text"]["text"]

    harness.click_answer("action_confirm", confirmation)
    wait_until(
        lambda: kube.deployment(NS, "vllm-llama-70b")["spec"]["replicas"] == 4, message="scaled anyway"
    )
    pending = [
        p
        for p in kube.pods(NS)
        if p["metadata"]["name"].startswith("vllm-llama-70b") and p["status"].get("phase") == "Pending"
    ]
    assert len(pending) == 2


def test_restart_from_the_runbook_button(harness: Harness) -> None:
    incident = harness.open_incident(
        group="oom", alertname="ModelServerOOMKilled", pod="vllm-llama-0", container="vllm"
    )
    runbook = runbook_message(harness, incident)
    _, button = find_button(runbook.blocks, "runbook_action:1")
    assert button["text"]["text"].startswith("Restart vllm-llama")
    confirmation = harness.answer(harness.click("runbook_action:1", runbook))
    text = harness.text(confirmation)
    assert "Confirm: restart" in text
    assert "replace all 2 pod(s), same template (llama-3-8b v14)" in text
    assert "revision 3 -> 4" in text
    harness.click_answer("action_confirm", confirmation)

    harness.wait_thread(incident, f"*restart `{TARGET}`*: done")
    patch = [r for r in harness.real_writes() if r.method == "PATCH"]
    assert len(patch) == 1
    assert patch[0].content_type == "application/strategic-merge-patch+json"
    annotations = patch[0].body["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert model_version(harness.kube) == "v14"
    assert (
        harness.kube.deployment(NS, NAME)["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "4"
    )


# ------------------------------------------------------------------ Kubernetes errors


def test_a_conflict_during_the_rollback_is_reported_clearly(harness: Harness) -> None:
    incident = harness.open_incident()
    confirmation = harness.answer(harness.command("/rollback", TARGET))
    harness.kube.fail_next("PATCH", rf"/deployments/{NAME}$", 409, times=3)
    harness.click_answer("action_confirm", confirmation)
    failed = harness.wait_thread(incident, "failed")
    assert (
        f"deployment {TARGET} was changed by someone else while the bot tried to roll back it"
        in html.unescape(json.dumps(failed.blocks))
    )
    assert model_version(harness.kube) == "v14"
    record = harness.wait_record(lambda r: r.status == "failed")
    assert "changed by someone else" in (record.error or "")
    assert harness.records(status="failed")[0].id == record.id
    wait_until(lambda: not _locks(harness), message="the lock released after the failure")


def test_a_deployment_deleted_before_the_click_is_reported_as_not_found(harness: Harness) -> None:
    incident = harness.open_incident()
    confirmation = harness.answer(harness.command("/rollback", TARGET))
    harness.kube.fail_next("GET", rf"/deployments/{NAME}$", 404)
    harness.click_answer("action_confirm", confirmation)
    harness.wait_thread(incident, f"deployment {TARGET} not found")
    assert harness.real_writes() == []


def test_missing_rbac_permission_names_the_verb_and_resource(harness: Harness) -> None:
    incident = harness.open_incident()
    harness.kube.fail_next("PATCH", r"/scale$", 403)
    harness.command("/scale", f"{TARGET} 3")
    failed = harness.wait_thread(incident, "failed")
    text = html.unescape(json.dumps(failed.blocks))
    assert 'Kubernetes RBAC does not let the bot patch \\"deployments/scale\\"' in text or (
        'does not let the bot patch "deployments/scale"' in html.unescape(failed.text)
    )
    assert "grant that verb to the bot's ServiceAccount" in text


def test_a_rollout_after_the_confirmation_stops_the_rollback(harness: Harness) -> None:
    incident = harness.open_incident()
    confirmation = harness.answer(harness.command("/rollback", TARGET))
    harness.kube.rollout(NS, NAME, model_version="v15")
    harness.click_answer("action_confirm", confirmation)
    failed = harness.wait_thread(incident, "failed")
    text = html.unescape(failed.text)
    assert f"{TARGET} changed since the rollback was confirmed (it is now revision 4, {MODEL} v15)" in text
    assert model_version(harness.kube) == "v15"
    assert [r for r in harness.real_writes() if r.method == "PATCH"] == []


def test_no_kubernetes_configured_says_how_to_configure_it(
    tmp_path: Path, settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    with run_bot(settings_for(policy_file=write_policy(tmp_path))) as bot:
        sender = SlackSender(bot.url, slack)
        sent = sender.command(TARGET, command="/rollback")
        assert "Kubernetes is not configured: set KUBECONFIG or run in-cluster" in sender.answer(sent)


def test_bad_arguments_get_the_usage_in_the_ack(harness: Harness) -> None:
    for command, text, problem in (
        ("/rollback", "", "`/rollback` needs a deployment"),
        ("/rollback", "vllm-llama", "`vllm-llama` is not `<namespace>/<deployment>`"),
        ("/rollback", f"{TARGET} latest", "`latest` is not a revision number"),
        ("/scale", f"{TARGET}", "`/scale` needs a deployment and a replica count"),
        ("/scale", f"{TARGET} many", "`many` is not a replica count"),
    ):
        sent = harness.command(command, text)
        shown = answer_text(sent.response.json())
        assert problem in shown, shown
        assert f"Usage: `{command}" in shown
    assert harness.records() == []


def _locks(harness: Harness) -> list[Any]:
    with Session(harness.bot.services.engine) as session:
        return list(session.exec(select(TargetLock)).all())


# ------------------------------------------------------------------ did it work?

LLAMA_P99 = (
    "histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
    '{namespace="llm-prod", model_name="meta-llama/Llama-3.1-8B-Instruct"}[5s]))) > 20'
)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ModelServingExporter, PrometheusServer]]:
    """A model-serving exporter scraped every second by a real Prometheus, shared by the module."""
    with ModelServingExporter(scenario="vllm_latency") as exporter:
        prometheus = start_prometheus(tmp_path_factory.mktemp("prometheus"), scrape_targets=[exporter.target])
        try:
            prometheus.wait_for_targets_up(timeout=60)
            yield exporter, prometheus
        finally:
            prometheus.stop()


@pytest.fixture
def watched(
    tmp_path: Path,
    settings_for: Callable[..., Settings],
    slack: SlackStandIn,
    kube: KubeStandIn,
    fleet: tuple[ModelServingExporter, PrometheusServer],
) -> Iterator[Callable[..., Harness]]:
    """`watched(verify_seconds)`: a bot with Prometheus, while Llama is slow (the alert holds)."""
    exporter, prometheus = fleet
    exporter.set_scenario("vllm_latency")
    wait_until(lambda: prometheus.query(LLAMA_P99), timeout=60, message="the alert's condition to hold")
    seed_llama(kube)
    contexts: list[Any] = []

    def factory(verify_seconds: float) -> Harness:
        settings = settings_for(
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            policy_file=write_policy(tmp_path),
            prometheus_url=prometheus.url,
            verify_seconds=verify_seconds,
        )
        context = run_bot(settings)
        contexts.append(context)
        bot = context.__enter__()
        return Harness(bot, slack, kube, SlackSender(bot.url, slack))

    yield factory
    for context in reversed(contexts):
        context.__exit__(None, None, None)


@pytest.mark.prometheus
def test_the_bot_reports_recovery_with_the_figure_before_and_after(
    watched: Callable[..., Harness], fleet: tuple[ModelServingExporter, PrometheusServer]
) -> None:
    exporter, prometheus = fleet
    harness = watched(60)
    incident = harness.open_incident(
        generator_url=f"{prometheus.url}/graph?g0.expr={quote(LLAMA_P99)}&g0.tab=1"
    )
    harness.command("/scale", f"{TARGET} 3")
    harness.wait_thread(incident, "Watching *VLLMHighE2ELatency* for up to 60 s")
    exporter.set_scenario("healthy")  # the new replicas take the load

    recovered = harness.wait_thread(incident, "Recovered", timeout=60)
    text = html.unescape(recovered.text)
    assert re.search(
        r"recovered: VLLMHighE2ELatency [\d.]+ (s|min) -> [\d.]+ s, \d+ s after the action", text
    ), text
    harness.wait_event(incident, "Recovery check after scale llm-prod/vllm-llama: replicas 2 -> 3: recovered")
    record = harness.wait_record(lambda r: r.status == "succeeded")
    check = record.result["verification"]
    assert check["recovered"] is True
    assert check["before"] > 20 > check["after"]  # the alert's threshold, crossed back
    # The service recovered after the bot's own action: the incident is mitigated (the impact
    # is over), not resolved: that waits for the alerts or a responder.
    harness.wait_thread(incident, "mitigated")
    assert harness.bot.incident(incident["id"])["status"] == "mitigated"
    (mitigated,) = harness.events(incident, "mitigated")
    assert "recovered the service" in mitigated["text"]


@pytest.mark.prometheus
def test_the_bot_says_when_the_service_did_not_recover(
    watched: Callable[..., Harness], fleet: tuple[ModelServingExporter, PrometheusServer]
) -> None:
    _, prometheus = fleet
    harness = watched(3)
    incident = harness.open_incident(
        generator_url=f"{prometheus.url}/graph?g0.expr={quote(LLAMA_P99)}&g0.tab=1"
    )
    harness.command("/scale", f"{TARGET} 3")
    failed = harness.wait_thread(incident, "Not recovered", timeout=30)
    text = html.unescape(failed.text)
    assert re.search(r"not recovered after 3 s: VLLMHighE2ELatency \d\d(\.\d)? s -> \d\d(\.\d)? s", text), (
        text
    )
    assert "the alert's condition still holds" in text
    harness.wait_event(incident, "not recovered after 3 s")
    assert harness.bot.incident(incident["id"])["status"] == "triggered"
