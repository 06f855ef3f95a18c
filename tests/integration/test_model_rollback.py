"""`/rollback model NAME[@ALIAS] [VERSION]` end to end: signed slash commands and clicks into
the real bot, a real MLflow tracking server whose alias the bot moves (read back from MLflow
itself), through the same guardrails as a deployment rollback."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.config import Settings
from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.slack_api import SlackStandIn
from tests.support.actions import Harness, write_policy
from tests.support.botserver import run_bot, wait_until
from tests.support.mlflow import MlflowServer
from tests.support.payloads import alert, notification
from tests.support.promstack import PrometheusServer
from tests.support.slack_requests import ALICE, BOB, CAROL, SlackSender, find_button

POLICY = """
defaults: {cooldown: 0s}
rules:
  - name: models
    actions: [model_rollback]
    usergroups: [S0SRE]
    models: ["churn-*"]
"""
ALIAS_POST = ("POST", "registered-models/alias")
RUNBOOK = """\
name: model-quality
description: "Quality of {{ labels.model_name }} dropped."
match: ['model_name=~"churn-.*"']
steps:
  - "Compare the serving version with the one before it (the registry message below)."
actions:
  - action: model_rollback
    model: "{{ labels.model_name }}"
examples:
  - labels: {alertname: ModelAccuracyDrop, model_name: churn-xgb, severity: warning}
"""
_names = iter(range(1, 10_000))


@pytest.fixture
def start(
    tmp_path: Path, settings_for: Callable[..., Settings], slack: SlackStandIn, mlflow_server: MlflowServer
) -> Iterator[Callable[[str], Harness]]:
    stack: list[Any] = []

    def build(policy: str = POLICY, **overrides: Any) -> Harness:
        settings = settings_for(
            **{
                "mlflow_tracking_uri": mlflow_server.url,
                "policy_file": write_policy(tmp_path, policy),
                **overrides,
            }
        )
        context = run_bot(settings)
        bot = context.__enter__()
        stack.append(context)
        return Harness(bot, slack, None, SlackSender(bot.url, slack))  # type: ignore[arg-type]

    yield build
    for context in reversed(stack):
        context.__exit__(None, None, None)


def churn_model(mlflow: MlflowServer) -> tuple[str, str]:
    """A fresh `churn-*` model (the server is shared by the session) with v1 (accuracy 0.93)
    as champion. Returns (name, v1)."""
    name = f"churn-xgb-{next(_names)}"
    mlflow.create_model(name)
    v1, _ = mlflow.register_version(name, {"accuracy": 0.93})
    mlflow.set_alias(name, "champion", v1)
    return name, v1


def serve_v2(mlflow: MlflowServer, name: str) -> str:
    """A release: v2 (accuracy 0.84, worse) takes the champion alias."""
    v2, _ = mlflow.register_version(name, {"accuracy": 0.84})
    mlflow.set_alias(name, "champion", v2)
    return v2


def open_model_incident(harness: Harness, name: str) -> dict[str, Any]:
    """An incident about the model; its registry post records where champion points."""
    incident = harness.open_incident(group=name, model_name=name)
    harness.wait_thread(incident, "model registry")
    return incident


def test_rollback_model_confirms_v2_to_v1_with_metrics_and_moves_the_alias(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1 = churn_model(mlflow_server)
    open_model_incident(harness, name)  # the bot sees champion at v1 ...
    v2 = serve_v2(mlflow_server, name)  # ... then a release moves it to v2, which is worse
    sent = harness.command("/rollback", f"model {name}@champion")
    confirmation = harness.answer(sent)
    text = harness.text(confirmation)
    assert f"{name}@champion: v{v2} -> v{v1}" in text
    assert "metric accuracy: 0.84 -> 0.93" in text
    assert "where the alias pointed before, as the bot saw it" in text
    assert mlflow_server.alias(name, "champion") == v2  # nothing moves before the confirmation

    posts = mlflow_server.requests(*ALIAS_POST)
    done = harness.answer(harness.click_answer("action_confirm", confirmation))
    assert "Confirmed" in harness.text(done)
    wait_until(lambda: mlflow_server.alias(name, "champion") == v1, message="champion back on v1")
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert (record.kind, record.target, record.requested_by) == (
        "model_rollback",
        f"{name}@champion",
        ALICE.id,
    )
    assert mlflow_server.requests(*ALIAS_POST) == posts + 1


def test_on_an_incident_the_timeline_has_the_actor_and_the_thread_the_result(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1 = churn_model(mlflow_server)
    first = open_model_incident(harness, name)
    v2 = serve_v2(mlflow_server, name)
    # The command names no incident: the one open incident about this model is found by its label.
    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    harness.click_answer("action_confirm", confirmation)
    wait_until(lambda: mlflow_server.alias(name, "champion") == v1, message="champion back on v1")
    event = harness.wait_event(first, ": done,")
    assert event["actor"] == ALICE.id
    assert f"v{v2} -> v{v1}" in event["text"]
    harness.wait_thread(first, f"{name}@champion: v{v2} -> v{v1}")


def test_the_models_file_names_the_registered_model_and_the_alias_to_move(
    tmp_path: Path, start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    # Served as `churn-svc-N`, registered as `churn-xgb-N`, served through `prod`: the file says so.
    number = next(_names)
    served, name = f"churn-svc-{number}", f"churn-xgb-{number}"
    mlflow_server.create_model(name)
    v1, _ = mlflow_server.register_version(name, {"accuracy": 0.93})
    mlflow_server.set_alias(name, "prod", v1)
    models = tmp_path / "models.yaml"
    models.write_text(
        f"models:\n  - model: {served}\n    registered_model: {name}\n    alias: prod\n", encoding="utf-8"
    )
    harness = start(models_file=models)
    incident = open_model_incident(harness, served)  # the bot sees prod at v1 ...
    v2, _ = mlflow_server.register_version(name, {"accuracy": 0.84})
    mlflow_server.set_alias(name, "prod", v2)  # ... then a release moves it to v2

    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))  # no alias given
    assert f"{name}@prod: v{v2} -> v{v1}" in harness.text(confirmation)
    harness.click_answer("action_confirm", confirmation)
    wait_until(lambda: mlflow_server.alias(name, "prod") == v1, message="prod back on v1")
    # The incident labelled with the served name is the one the rollback belongs to.
    assert f"v{v2} -> v{v1}" in harness.wait_event(incident, ": done,")["text"]
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert (record.target, record.incident_id) == (f"{name}@prod", incident["id"])


def test_a_given_version_and_a_dry_run(start: Callable[..., Harness], mlflow_server: MlflowServer) -> None:
    harness = start()
    name, v1 = churn_model(mlflow_server)
    v2 = serve_v2(mlflow_server, name)
    v3, _ = mlflow_server.register_version(name, {"accuracy": 0.5})
    mlflow_server.set_alias(name, "champion", v3)

    dry = harness.text(harness.answer(harness.command("/rollback", f"model {name}@champion v{v1} --dry-run")))
    assert f"{name}@champion: v{v3} -> v{v1}" in dry
    assert "POST /api/2.0/mlflow/registered-models/alias" in dry
    assert "nothing was sent" in dry
    assert mlflow_server.alias(name, "champion") == v3

    confirmation = harness.answer(harness.command("/rollback", f"model {name} {v2}"))
    assert f"{name}@champion: v{v3} -> v{v2}" in harness.text(confirmation)
    harness.click_answer("action_confirm", confirmation)
    wait_until(lambda: mlflow_server.alias(name, "champion") == v2, message="champion on v2")


def test_policy_refusals_leave_the_alias_alone(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    mlflow_server.create_model("fraud-lgbm-refused")
    mlflow_server.register_version("fraud-lgbm-refused", {"precision": 0.9})
    f2, _ = mlflow_server.register_version("fraud-lgbm-refused", {"precision": 0.7})
    mlflow_server.set_alias("fraud-lgbm-refused", "champion", f2)
    name, _ = churn_model(mlflow_server)
    v2 = serve_v2(mlflow_server, name)
    posts = mlflow_server.requests(*ALIAS_POST)

    other = harness.text(harness.answer(harness.command("/rollback", "model fraud-lgbm-refused")))
    assert "allows model_rollback only on models churn-*; fraud-lgbm-refused is not one of them" in other
    outsider = harness.text(harness.answer(harness.command("/rollback", f"model {name}", user=CAROL)))
    assert f"{CAROL.id} may not run model_rollback" in outsider
    assert mlflow_server.alias("fraud-lgbm-refused", "champion") == f2
    assert mlflow_server.alias(name, "champion") == v2
    assert mlflow_server.requests(*ALIAS_POST) == posts
    assert [r.status for r in harness.records()] == ["refused", "refused"]


def test_double_clicks_move_the_alias_once(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1 = churn_model(mlflow_server)
    serve_v2(mlflow_server, name)
    command = harness.command("/rollback", f"model {name} {v1}")
    assert harness.sender.resend(command).status_code == 200  # Slack retries the command
    confirmation = harness.answer(command)
    posts = mlflow_server.requests(*ALIAS_POST)

    clicks: list[Any] = []
    threads = [
        threading.Thread(target=lambda: clicks.append(harness.click_answer("action_confirm", confirmation)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert harness.sender.resend(clicks[0]).status_code == 200

    wait_until(lambda: mlflow_server.alias(name, "champion") == v1, message="champion back on v1")
    harness.wait_record(lambda r: r.status == "succeeded")
    answers = [harness.text(harness.answer(c)) for c in clicks]
    assert sorted("Confirmed" in a for a in answers) == [False, True], answers
    assert mlflow_server.requests(*ALIAS_POST) == posts + 1
    assert len(harness.records()) == 1


def test_an_alias_moved_after_the_confirmation_is_left_alone(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1 = churn_model(mlflow_server)
    v2 = serve_v2(mlflow_server, name)
    confirmation = harness.answer(harness.command("/rollback", f"model {name} {v1}"))
    v3, _ = mlflow_server.register_version(name, {"accuracy": 0.95})
    mlflow_server.set_alias(name, "champion", v3)  # someone released v3 meanwhile
    harness.click_answer("action_confirm", confirmation)
    record = harness.wait_record(lambda r: r.status == "failed")
    assert f"moved to v{v3} since the rollback was confirmed (it was v{v2})" in (record.error or "")
    assert mlflow_server.alias(name, "champion") == v3


def test_without_the_registry_the_command_says_what_to_set(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start(mlflow_tracking_uri=None)
    text = harness.text(harness.answer(harness.command("/rollback", "model churn-xgb")))
    assert "the model registry is not configured: set MLFLOW_TRACKING_URI" in text


def test_bad_model_commands_get_the_usage(start: Callable[..., Harness]) -> None:
    harness = start()
    sent = harness.command("/rollback", "model churn-xgb latest")
    assert "is not a model version number" in sent.response.text
    assert "/rollback model <name>[@<alias>]" in sent.response.text
    assert harness.records() == []


def test_runbook_button_rolls_the_model_back(
    tmp_path: Path, start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    runbooks = tmp_path / "model-runbooks"
    runbooks.mkdir()
    (runbooks / "model-quality.yaml").write_text(RUNBOOK)
    harness = start(runbooks_dir=runbooks)
    name, v1 = churn_model(mlflow_server)
    open_model_incident(harness, name)
    v2 = serve_v2(mlflow_server, name)
    incident = harness.bot.incident(1)
    runbook = harness.wait_thread(incident, "Runbook: ")
    _, button = find_button(runbook.blocks, "runbook_action:0")
    assert button["text"]["text"] == f"Roll back {name}"  # the alias is resolved when clicked
    assert button["style"] == "danger"

    confirmation = harness.answer(harness.click("runbook_action:0", runbook, user=BOB))
    assert f"{name}@champion: v{v2} -> v{v1}" in harness.text(confirmation)
    harness.click_answer("action_confirm", confirmation, user=BOB)
    wait_until(lambda: mlflow_server.alias(name, "champion") == v1, message="champion back on v1")
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert record.requested_by == BOB.id
    assert "runbook:model-quality@" in record.source
    assert harness.wait_event(incident, ": done,")["actor"] == BOB.id


SLOW_P99 = (
    "histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
    '{namespace="llm-prod", model_name="meta-llama/Llama-3.1-8B-Instruct"}[5s]))) > 20'
)


@pytest.mark.prometheus
def test_after_a_model_rollback_the_bot_checks_recovery(
    start: Callable[..., Harness],
    mlflow_server: MlflowServer,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    with ModelServingExporter(scenario="vllm_latency") as exporter:
        prometheus = prometheus_factory(scrape_targets=[exporter.target])
        prometheus.wait_for_targets_up(timeout=60)
        wait_until(lambda: prometheus.query(SLOW_P99), timeout=60, message="the alert's condition to hold")
        harness = start(prometheus_url=prometheus.url, verify_seconds=60)
        name, v1 = churn_model(mlflow_server)
        item = alert(model_name=name)
        item["generatorURL"] = f"{prometheus.url}/graph?g0.expr={quote(SLOW_P99)}&g0.tab=1"
        harness.bot.post_alert(notification(item, group_key=f"group-{name}"))
        incident = wait_until(
            lambda: harness.bot.incident(1)["ts"] and harness.bot.incident(1), message="posted"
        )
        harness.wait_thread(incident, "model registry")
        v2 = serve_v2(mlflow_server, name)

        confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
        harness.click_answer("action_confirm", confirmation)
        harness.wait_thread(incident, "Watching *VLLMHighE2ELatency* for up to 60 s")
        assert mlflow_server.alias(name, "champion") == v1
        exporter.set_scenario("healthy")  # the old version serves well again

        recovered = harness.wait_thread(incident, "Recovered", timeout=60)
    assert "recovered: VLLMHighE2ELatency" in html.unescape(recovered.text)
    harness.wait_event(incident, f"Recovery check after roll back {name}@champion: v{v2} -> v{v1}: recovered")


def test_approval_and_cooldown_apply_per_model_alias(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start(POLICY.replace("cooldown: 0s", "cooldown: 1h") + "    approvers: {required: 1}\n")
    name, v1 = churn_model(mlflow_server)
    incident = open_model_incident(harness, name)
    v2 = serve_v2(mlflow_server, name)

    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    assert "needs 1 approval from a member of S0SRE, other than the requester" in harness.text(confirmation)
    harness.click_answer("action_confirm", confirmation)
    request = harness.wait_thread(incident, f"asks to *roll back `{name}@champion`*")
    own = harness.text(harness.answer(harness.click("action_approve", request, user=ALICE)))
    assert "cannot approve it" in own
    assert mlflow_server.alias(name, "champion") == v2

    harness.answer(harness.click("action_approve", request, user=BOB))
    wait_until(lambda: mlflow_server.alias(name, "champion") == v1, message="rolled back after the approval")
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert record.approved_by == BOB.id

    # The cooldown counts from that rollback, for this model's alias.
    again = harness.text(harness.answer(harness.command("/rollback", f"model {name} {v2}", user=BOB)))
    assert f"cooldown: last model_rollback on {name}@champion was" in again
    assert mlflow_server.alias(name, "champion") == v1
