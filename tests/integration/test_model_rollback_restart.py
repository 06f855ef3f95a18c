"""A model rollback that restarts the Deployments serving the model, so they load the version
the alias moves to: signed slash commands and clicks into the real bot, a real MLflow tracking
server, the official Kubernetes client against the Kubernetes API stand-in, the Slack stand-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from sqlmodel import Session

from bot.actions.kubernetes import RESTARTED_AT, Workloads
from bot.actions.models import ActionRecord, ActionStatus
from bot.actions.registry import ModelRollbackParams
from bot.config import Settings
from bot.db import create_db_engine
from bot.flows.model_rollback_run import STEPS, run_model_rollback
from bot.registry.mlflow import MlflowRegistry
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from bot.schema import init_schema
from tests.support.actions import Harness, write_policy
from tests.support.botserver import run_bot, wait_until
from tests.support.mlflow import MlflowServer
from tests.support.payloads import alert, notification
from tests.support.slack_requests import ALICE, BOB, SlackSender, find_button

T = TypeVar("T")

NS, SERVING = "ml", "churn-svc"
DEPLOYMENT = f"{NS}/{SERVING}"
ALIAS_POST = ("POST", "registered-models/alias")
POLICY = """
defaults: {cooldown: 0s}
rules:
  - name: models
    actions: [model_rollback]
    usergroups: [S0SRE]
    models: ["churn-*"]
  - name: ml-serving
    actions: [restart, rollback]
    usergroups: [S0SRE]
    namespaces: ["ml"]
    deployments: ["churn-*"]
"""
# Model rollbacks without confirmation, and no rule that allows restarts.
NO_RESTARTS = """
defaults: {cooldown: 0s}
rules:
  - name: models
    actions: [model_rollback]
    usergroups: [S0SRE]
    models: ["churn-*"]
    confirm: false
"""
_names = iter(range(1, 10_000))


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as standin:
        standin.add_deployment(NS, SERVING, image="ghcr.io/acme/churn-server:1.4", replicas=2)
        yield standin


@pytest.fixture
def start(
    tmp_path: Path,
    settings_for: Callable[..., Settings],
    slack: SlackStandIn,
    mlflow_server: MlflowServer,
    kube: KubeStandIn,
) -> Iterator[Callable[..., Harness]]:
    stack: list[Any] = []

    def build(policy: str = POLICY, **overrides: Any) -> Harness:
        settings = settings_for(
            **{
                "mlflow_tracking_uri": mlflow_server.url,
                "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                "policy_file": write_policy(tmp_path, policy),
                **overrides,
            }
        )
        context = run_bot(settings)
        bot = context.__enter__()
        stack.append(context)
        return Harness(bot, slack, kube, SlackSender(bot.url, slack))

    yield build
    for context in reversed(stack):
        context.__exit__(None, None, None)


def churn_model(mlflow: MlflowServer, alias: str = "champion") -> tuple[str, str, str]:
    """A fresh `churn-*` model: v1 (accuracy 0.93) then v2 (0.84, worse) on `alias`.
    Returns (name, v1, v2)."""
    name = f"churn-xgb-r{next(_names)}"
    mlflow.create_model(name)
    v1, _ = mlflow.register_version(name, {"accuracy": 0.93})
    v2, _ = mlflow.register_version(name, {"accuracy": 0.84})
    mlflow.set_alias(name, alias, v2)
    return name, v1, v2


def open_served_incident(harness: Harness, name: str, **labels: str) -> dict[str, Any]:
    """An alert about the model served by ml/churn-svc (its labels say so)."""
    served = {"namespace": NS, "deployment": SERVING, **labels}
    item = alert("ModelAccuracyDrop", model_name=name, **{k: v for k, v in served.items() if v})
    key = harness.bot.post_alert(notification(item, group_key=f"group-{name}")).json()["incident"]
    return wait_until(lambda: harness.bot.incident(key)["ts"] and harness.bot.incident(key), message="posted")


def revision(kube: KubeStandIn) -> int:
    return int(kube.deployment(NS, SERVING)["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def restarted_at(kube: KubeStandIn) -> str | None:
    annotations = kube.deployment(NS, SERVING)["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(RESTARTED_AT)


def real_patches(harness: Harness) -> int:
    return len([r for r in harness.real_writes() if r.method == "PATCH"])


def test_from_an_incident_the_alias_moves_then_the_serving_deployment_restarts(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1, v2 = churn_model(mlflow_server)
    incident = open_served_incident(harness, name)
    before = revision(harness.kube)

    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    text = harness.text(confirmation)
    assert f"{name}@champion: v{v2} -> v{v1}" in text
    assert f"then restart {DEPLOYMENT} (rolling) so it loads v{v1}" in text
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/{SERVING}" in text  # the restart's request
    assert harness.real_writes() == []
    assert mlflow_server.alias(name, "champion") == v2

    posts = mlflow_server.requests(*ALIAS_POST)
    harness.click_answer("action_confirm", confirmation)
    record = harness.wait_record(lambda r: r.status in ("succeeded", "failed"), timeout=30)
    assert record.status == "succeeded", record.error
    assert mlflow_server.alias(name, "champion") == v1
    assert restarted_at(harness.kube) is not None
    assert revision(harness.kube) == before + 1
    assert real_patches(harness) == 1
    assert mlflow_server.requests(*ALIAS_POST) == posts + 1
    assert record.plan["restart"] == [DEPLOYMENT]

    # Each step is audited on the timeline with who asked for it, then the whole result.
    alias_step = harness.wait_event(incident, "Step 1 of 2:")
    restart_step = harness.wait_event(incident, "Step 2 of 2:")
    assert (alias_step["actor"], restart_step["actor"]) == (ALICE.id, ALICE.id)
    assert f"v{v2} -> v{v1}" in alias_step["text"]
    assert f"{DEPLOYMENT}" in restart_step["text"]
    assert f"so it loads v{v1}" in restart_step["text"]
    harness.wait_thread(incident, f"then restarted {DEPLOYMENT} so it loads v{v1}")


def test_the_deployment_is_found_from_the_pod_label_too(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1, _ = churn_model(mlflow_server)
    open_served_incident(harness, name, deployment="", pod=f"{SERVING}-7c9d5b6f48-2xkqp")
    text = harness.text(harness.answer(harness.command("/rollback", f"model {name} --dry-run")))
    assert f"then restart {DEPLOYMENT} (rolling) so it loads v{v1}" in text


def test_a_restart_the_policy_refuses_is_left_out_and_the_requester_is_told_first(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start(NO_RESTARTS)
    name, v1, _ = churn_model(mlflow_server)
    open_served_incident(harness, name)

    # The policy does not ask to confirm model rollbacks, but this one leaves the servers on
    # the old version: the requester sees that before anything moves.
    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    text = harness.text(confirmation)
    assert "Confirm" in text
    assert f"{DEPLOYMENT} will NOT be restarted: the policy refuses it" in text
    assert "may not run restart" in text
    assert "Only the alias moves: pods that loaded the model keep serving that version" in text
    assert "then restart" not in text

    harness.click_answer("action_confirm", confirmation)
    record = harness.wait_record(lambda r: r.status in ("succeeded", "failed"))
    assert record.status == "succeeded", record.error
    assert mlflow_server.alias(name, "champion") == v1
    assert harness.real_writes() == []
    assert record.plan["restart"] == []


def test_a_restart_asked_for_and_refused_refuses_the_whole_request(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start(NO_RESTARTS)
    name, _, v2 = churn_model(mlflow_server)
    text = harness.text(harness.answer(harness.command("/rollback", f"model {name} --restart {DEPLOYMENT}")))
    assert f"the restart of {DEPLOYMENT} after the model rollback is refused" in text
    assert mlflow_server.alias(name, "champion") == v2
    assert harness.real_writes() == []
    assert [r.status for r in harness.records()] == ["refused"]


def test_an_explicit_restart_without_an_incident_and_a_dry_run_of_both_steps(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1, v2 = churn_model(mlflow_server)
    posts = mlflow_server.requests(*ALIAS_POST)
    text = harness.text(
        harness.answer(harness.command("/rollback", f"model {name} --restart {DEPLOYMENT} --dry-run"))
    )
    assert f"{name}@champion: v{v2} -> v{v1}" in text
    assert f"then restart {DEPLOYMENT} (rolling) so it loads v{v1}" in text
    assert "the bot would send the alias request; nothing was sent" in text
    assert "accepted the restart(s) as a dry run" in text
    # The API server validated the restart (dryRun=All); nothing changed anywhere.
    assert [r.query.get("dryRun") for r in harness.writes()] == ["All"]
    assert harness.real_writes() == []
    assert mlflow_server.alias(name, "champion") == v2
    assert mlflow_server.requests(*ALIAS_POST) == posts
    assert [r.status for r in harness.records()] == ["dry_run"]


def test_no_restart_asked_moves_only_the_alias(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1, _ = churn_model(mlflow_server)
    open_served_incident(harness, name)
    confirmation = harness.answer(harness.command("/rollback", f"model {name} --no-restart"))
    assert "restart" not in harness.text(confirmation).replace("Restart", "")
    harness.click_answer("action_confirm", confirmation)
    harness.wait_record(lambda r: r.status == "succeeded")
    assert mlflow_server.alias(name, "champion") == v1
    assert harness.real_writes() == []


def test_a_failed_restart_after_the_alias_moved_says_what_is_true_and_what_to_do(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1, v2 = churn_model(mlflow_server)
    incident = open_served_incident(harness, name)
    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    harness.kube.fail_next("PATCH", rf"/deployments/{SERVING}$", 403)
    harness.click_answer("action_confirm", confirmation)

    record = harness.wait_record(lambda r: r.status in ("succeeded", "failed"))
    assert record.status == "failed"
    error = record.error or ""
    assert f"rolled back {name}@champion: v{v2} -> v{v1}, but the restart of {DEPLOYMENT} failed" in error
    assert f"The alias stays on v{v1}; not restarted: {DEPLOYMENT}" in error
    assert (
        f"To load v{v1}, restart it yourself: kubectl rollout restart deployment/{SERVING} -n {NS}" in error
    )
    assert mlflow_server.alias(name, "champion") == v1
    assert restarted_at(harness.kube) is None
    harness.wait_thread(incident, f"but the restart of {DEPLOYMENT} failed")
    assert harness.wait_event(incident, "Step 1 of 2:")["actor"] == ALICE.id


def test_the_deployment_is_locked_and_a_retried_job_moves_the_alias_and_restarts_once(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    harness = start()
    name, v1, _ = churn_model(mlflow_server)
    incident = open_served_incident(harness, name)
    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    posts = mlflow_server.requests(*ALIAS_POST)

    harness.kube.outage()  # the alias moves; the restart cannot reach the cluster yet
    harness.click_answer("action_confirm", confirmation)
    wait_until(lambda: mlflow_server.alias(name, "champion") == v1, message="the alias moved first")
    harness.wait_record(lambda r: r.status == "running")
    busy = harness.text(harness.answer(harness.command("/rollback", DEPLOYMENT, user=BOB)))
    assert f"{DEPLOYMENT} is busy: model_rollback by <@{ALICE.id}>" in busy

    harness.kube.restore()
    record = harness.wait_record(lambda r: r.status in ("succeeded", "failed"), timeout=60)
    assert record.status == "succeeded", record.error
    assert restarted_at(harness.kube) is not None
    assert real_patches(harness) == 1
    assert mlflow_server.requests(*ALIAS_POST) == posts + 1  # the retried job did not move it again
    assert len(harness.events(incident)) == len({e["text"] for e in harness.events(incident)})


def test_a_job_resumed_after_a_crash_does_not_restart_twice(
    tmp_path: Path, kube: KubeStandIn, mlflow_server: MlflowServer
) -> None:
    """The crash came after the restart request and before its result was recorded: the record
    says the alias step is done and the restart was started at revision R. The resumed job
    finds the Deployment past R and neither moves the alias nor restarts again."""
    name, v1, v2 = churn_model(mlflow_server)
    workloads = Workloads.from_environment(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    registry = MlflowRegistry(mlflow_server.url)
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    init_schema(engine)
    try:
        started_at = revision(kube)
        mlflow_server.set_alias(name, "champion", v1)  # what the crashed attempt did ...
        workloads.restart(NS, SERVING)  # ... both steps
        params = ModelRollbackParams(model=name, alias="champion")
        record = ActionRecord(
            kind="model_rollback",
            source="test",
            label="roll back",
            target=params.target,
            params=params.model_dump(mode="json"),
            status=ActionStatus.RUNNING,
            requested_by=ALICE.id,
            plan={"from_version": v2, "to_version": v1, "restart": [DEPLOYMENT]},
            result={
                STEPS: {
                    "alias": {"ok": True, "text": f"rolled back {params.target}: v{v2} -> v{v1}"},
                    DEPLOYMENT: {"status": "started", "from_revision": started_at},
                }
            },
        )
        with Session(engine) as session:
            session.add(record)
            session.commit()
            session.refresh(record)
        kube.clear_requests()
        posts = mlflow_server.requests(*ALIAS_POST)

        outcome = _run(run_model_rollback(engine, registry, workloads, record, params, lambda: True))
        assert outcome.ok, outcome.text
        assert (
            outcome.text
            == f"rolled back {params.target}: v{v2} -> v{v1}; then restarted {DEPLOYMENT} so it loads v{v1}"
        )
        assert [r for r in kube.requests if r.method == "PATCH"] == []
        assert mlflow_server.requests(*ALIAS_POST) == posts
        assert revision(kube) == started_at + 1
        with Session(engine) as session:
            stored = session.get(ActionRecord, record.id)
            assert stored is not None
            assert stored.result[STEPS][DEPLOYMENT]["status"] == "done"
            assert "(an earlier attempt)" in stored.result[STEPS][DEPLOYMENT]["text"]
    finally:
        workloads.close()
        registry.close()
        engine.dispose()


def _run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return anyio.run(main)


RUNBOOK = """\
name: model-quality
description: "Quality of {{ labels.model_name }} dropped."
match: ['model_name=~"churn-svc-.*"']
actions:
  - action: model_rollback
    model: "{{ labels.model_name }}"
    restart: false
examples:
  - labels: {alertname: ModelAccuracyDrop, model_name: churn-svc-1, severity: warning}
"""


def test_a_runbook_button_without_an_alias_moves_the_models_file_alias(
    tmp_path: Path, start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    # Served as churn-svc-N, registered as churn-xgb-N, served through `prod` (models file).
    number = next(_names)
    served, name = f"churn-svc-rb{number}", f"churn-xgb-rb{number}"  # the server is shared
    mlflow_server.create_model(name)
    v1, _ = mlflow_server.register_version(name, {"accuracy": 0.93})
    v2, _ = mlflow_server.register_version(name, {"accuracy": 0.84})
    mlflow_server.set_alias(name, "prod", v2)
    mlflow_server.set_alias(name, "champion", v1)  # a champion exists too: it must stay put
    models = tmp_path / "models.yaml"
    models.write_text(
        f"models:\n  - model: {served}\n    registered_model: {name}\n    alias: prod\n", encoding="utf-8"
    )
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "model-quality.yaml").write_text(RUNBOOK)
    harness = start(models_file=models, runbooks_dir=runbooks)
    incident = open_served_incident(harness, served)
    runbook = harness.wait_thread(incident, "Runbook: ")
    _, button = find_button(runbook.blocks, "runbook_action:0")
    assert button["text"]["text"] == f"Roll back {served}"

    confirmation = harness.answer(harness.click("runbook_action:0", runbook, user=BOB))
    text = harness.text(confirmation)
    assert f"{name}@prod: v{v2} -> v{v1}" in text
    assert "then restart" not in text  # restart: false in the runbook
    harness.click_answer("action_confirm", confirmation, user=BOB)
    wait_until(lambda: mlflow_server.alias(name, "prod") == v1, message="prod back on v1")
    assert mlflow_server.alias(name, "champion") == v1
    assert harness.wait_record(lambda r: r.status == "succeeded").target == f"{name}@prod"
    assert harness.real_writes() == []


def test_the_model_alias_label_names_the_alias_of_a_runbook_button(
    tmp_path: Path, start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    name, v1, v2 = churn_model(mlflow_server, alias="staging")
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "model-quality.yaml").write_text(RUNBOOK.replace("churn-svc-", "churn-xgb-r"))
    harness = start(runbooks_dir=runbooks)
    incident = open_served_incident(harness, name, model_alias="staging")
    runbook = harness.wait_thread(incident, "Runbook: ")
    confirmation = harness.answer(harness.click("runbook_action:0", runbook))
    assert f"{name}@staging: v{v2} -> v{v1}" in harness.text(confirmation)


def test_the_restart_rule_s_approvals_apply_to_the_model_rollback(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    # Model rollbacks alone need no approval here; restarts in ml do, so this one does.
    harness = start(
        POLICY.replace('deployments: ["churn-*"]', 'deployments: ["churn-*"]\n    approvers: {required: 1}')
    )
    name, v1, v2 = churn_model(mlflow_server)
    incident = open_served_incident(harness, name)
    confirmation = harness.answer(harness.command("/rollback", f"model {name}"))
    assert "needs 1 approval from a member of S0SRE, other than the requester" in harness.text(confirmation)
    harness.click_answer("action_confirm", confirmation)
    request = harness.wait_thread(incident, f"asks to *roll back `{name}@champion`*")
    assert f"then restart {DEPLOYMENT} (rolling) so it loads v{v1}" in harness.thread_text(incident)
    assert mlflow_server.alias(name, "champion") == v2

    harness.answer(harness.click("action_approve", request, user=BOB))
    record = harness.wait_record(lambda r: r.status in ("succeeded", "failed"), timeout=30)
    assert record.status == "succeeded", record.error
    assert record.approved_by == BOB.id
    assert mlflow_server.alias(name, "champion") == v1
    assert restarted_at(harness.kube) is not None


def test_a_restart_refused_by_the_time_of_the_confirmation_refuses_the_whole_rollback(
    start: Callable[..., Harness], mlflow_server: MlflowServer
) -> None:
    # Restarts of ml/* are 1 h apart; model rollbacks themselves have no cooldown.
    harness = start(POLICY.replace('deployments: ["churn-*"]', 'deployments: ["churn-*"]\n    cooldown: 1h'))
    first, f1, _ = churn_model(mlflow_server)
    second, _, s2 = churn_model(mlflow_server)
    open_served_incident(harness, first)
    open_served_incident(harness, second)
    alice = harness.answer(harness.command("/rollback", f"model {second}"))
    assert f"then restart {DEPLOYMENT}" in harness.text(alice)

    # Meanwhile bob rolls back the other model served by the same Deployment, restarting it.
    bob = harness.answer(harness.command("/rollback", f"model {first}", user=BOB))
    harness.click_answer("action_confirm", bob, user=BOB)
    done = harness.wait_record(lambda r: r.requested_by == BOB.id and r.status in ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    assert mlflow_server.alias(first, "champion") == f1

    refused = harness.text(harness.answer(harness.click_answer("action_confirm", alice)))
    assert f"the restart of {DEPLOYMENT} after the model rollback is refused: cooldown" in refused
    assert mlflow_server.alias(second, "champion") == s2
    assert real_patches(harness) == 1
