"""The Deployments a model rollback restarts: read from the incident's labels, decided by the
policy as `restart` next to the `model_rollback` decision, locked and counted for the restart
cooldown like any restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.actions import store as action_store
from bot.actions.models import ActionRecord, ActionStatus
from bot.actions.policy import ActionKind, ActionRequest, Policy
from bot.db import create_db_engine, transaction
from bot.errors import Conflict
from bot.flows.model_restarts import combine, restart_request_of, serving_deployments
from bot.kpis.models_file import ModelsFile, ModelSpec
from bot.schema import init_schema

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MODELS = ModelsFile((ModelSpec(model="churn-svc", registered_model="churn-xgb", alias="prod"),))


def test_the_serving_deployment_comes_from_deployment_or_pod_labels_of_this_model() -> None:
    label_sets = [
        {"namespace": "ml", "deployment": "churn-svc", "model_name": "churn-svc"},  # the served name
        {"namespace": "ml", "pod": "churn-canary-7c9d5b6f48-2xkqp", "model_name": "churn-xgb"},
        {"namespace": "ml", "deployment": "fraud-svc", "model_name": "fraud-lgbm"},  # another model
        {"namespace": "ml", "deployment": "gateway"},  # about no model: serves whatever the incident is about
        {"namespace": "ml", "deployment": "churn-svc", "registered_model": "churn-xgb"},  # named twice
        {"deployment": "no-namespace"},
        {"namespace": "ml", "deployment": "Not_A_Name"},
    ]
    assert serving_deployments(label_sets, "churn-xgb", MODELS) == [
        "ml/churn-svc",
        "ml/churn-canary",
        "ml/gateway",
    ]
    assert serving_deployments(label_sets, "fraud-lgbm", MODELS) == ["ml/fraud-svc", "ml/gateway"]


POLICY = """
defaults: {cooldown: 0s}
rules:
  - name: models
    actions: [model_rollback]
    users: [UALICE]
    models: ["churn-*"]
    confirm: false
  - name: serving
    actions: [restart]
    users: [UALICE, UBOB, UCAROL, UDAVE]
    namespaces: ["ml"]
    approvers: {required: 2}
  - name: dry-restarts
    actions: [restart]
    users: [UALICE]
    namespaces: ["staging"]
    dry_run: [restart]
"""


def decide(policy: Policy, request: ActionRequest):  # type: ignore[no-untyped-def]
    return policy.decide(request, user_groups=frozenset(), now=NOW, last_action_at=None)


def test_the_restart_decision_adds_its_confirmation_approvals_and_dry_run() -> None:
    policy = Policy.from_text(POLICY)
    model = decide(policy, ActionRequest(ActionKind.MODEL_ROLLBACK, "UALICE", None, None, model="churn-xgb"))
    assert (model.allowed, model.confirm, model.approvals_required) == (True, False, 0)

    restart = decide(policy, restart_request_of("UALICE", "ml/churn-svc"))
    both = combine(model, [restart])
    assert (both.allowed, both.confirm, both.approvals_required, both.dry_run) == (True, True, 2, False)
    assert both.rule == model.rule  # the model rollback's own rule still names the grant

    dry = combine(model, [restart, decide(policy, restart_request_of("UALICE", "staging/churn-svc"))])
    assert (dry.dry_run, dry.confirm, dry.approvals) == (True, False, None)
    assert dry.dry_run_reason is not None
    assert "only dry-runs restart" in dry.dry_run_reason


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    init_schema(engine)
    yield engine
    engine.dispose()


def record(kind: str, target: str, **plan: object) -> ActionRecord:
    return ActionRecord(
        kind=kind,
        source="test",
        label=kind,
        target=target,
        params={},
        status=ActionStatus.AWAITING_CONFIRMATION,
        requested_by="UALICE",
        plan=dict(plan),
    )


def test_a_model_rollback_locks_the_deployments_it_restarts(engine: Engine) -> None:
    with transaction(engine) as session:
        rollback = record("model_rollback", "churn-xgb@prod", restart=["ml/churn-svc"])
        restart = record("restart", "ml/churn-svc")
        session.add_all([rollback, restart])
        session.flush()
        assert action_store.lock_targets(rollback) == ["churn-xgb@prod", "ml/churn-svc"]
        assert action_store.queue_execution(session, rollback, [ActionStatus.AWAITING_CONFIRMATION], NOW)
        with pytest.raises(Conflict, match=r"ml/churn-svc is busy: model_rollback by <@UALICE>"):
            action_store.take_lock(session, restart, NOW)
        action_store.release_lock(session, rollback)
        action_store.take_lock(session, restart, NOW)  # free again once the rollback finished


def test_a_model_rollback_restart_counts_for_the_restart_cooldown(engine: Engine) -> None:
    with transaction(engine) as session:
        assert action_store.last_action_at(session, "restart", "ml/churn-svc") is None
        done = record("model_rollback", "churn-xgb@prod", restart=["ml/churn-svc"])
        done.status = ActionStatus.SUCCEEDED
        done.finished_at = NOW - timedelta(minutes=3)
        without = record("model_rollback", "churn-xgb@prod", restart=[])
        without.status = ActionStatus.SUCCEEDED
        without.finished_at = NOW - timedelta(minutes=1)
        session.add_all([done, without])
        session.flush()
        last = action_store.last_action_at(session, "restart", "ml/churn-svc")
        assert last is not None
        assert last.replace(tzinfo=UTC) == NOW - timedelta(minutes=3)
        assert action_store.last_action_at(session, "restart", "ml/other") is None
        assert action_store.last_action_at(session, "restart", "ml/churn-svc", exclude=done.id) is None


EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "config" / "policy.yaml"


def test_in_the_example_policy_on_call_restarts_what_serves_the_model_and_ml_engineers_do_not() -> None:
    example = Policy.load(EXAMPLE)

    def decide_as(group: str, request: ActionRequest):  # type: ignore[no-untyped-def]
        return example.decide(request, user_groups=frozenset({group}), now=NOW, last_action_at=None)

    model = ActionRequest(ActionKind.MODEL_ROLLBACK, "U0ANYONE", None, None, model="churn-xgb")
    restart = restart_request_of("U0ANYONE", "llm-prod-eu/triton-churn")
    assert decide_as("S04LLMONCALL", model).allowed
    assert decide_as("S04LLMONCALL", restart).allowed
    assert decide_as("S04MLENG", model).allowed
    refused = decide_as("S04MLENG", restart)
    assert not refused.allowed
    assert "allows restart only in namespaces llm-staging" in refused.message
