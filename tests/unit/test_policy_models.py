"""The policy for model_rollback: scoped by `models` globs instead of namespaces and
deployments, with the same cooldown, confirmation and file:line errors as the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.actions.policy import ActionKind, ActionRequest, Policy, RefusalKind
from bot.errors import ConfigError, PayloadError

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ALICE = "U0ALICE01"
POLICY = """\
defaults: {cooldown: 15m}
rules:
  - name: models
    actions: [model_rollback]
    users: [U0ALICE01]
    models: ["churn-*", "fraud-lgbm"]
"""


def request(model: str, actor: str = ALICE) -> ActionRequest:
    return ActionRequest(ActionKind.MODEL_ROLLBACK, actor, None, None, model=model, alias="champion")


def test_a_model_rollback_rule_needs_no_namespaces_and_matches_model_globs() -> None:
    policy = Policy.from_text(POLICY)
    allowed = policy.decide(request("churn-xgb"), user_groups=frozenset(), now=NOW, last_action_at=None)
    assert allowed.allowed
    assert allowed.confirm  # moving a serving alias back is confirmed, like a rollback
    assert allowed.request.target == "churn-xgb@champion"

    refused = policy.decide(request("ranker-v2"), user_groups=frozenset(), now=NOW, last_action_at=None)
    assert not refused.allowed
    assert refused.message == (
        "not allowed: rule 'models' allows model_rollback only on models churn-*, fraud-lgbm; "
        "ranker-v2 is not one of them"
    )


def test_the_cooldown_counts_per_model_alias() -> None:
    policy = Policy.from_text(POLICY)
    decision = policy.decide(
        request("churn-xgb"), user_groups=frozenset(), now=NOW, last_action_at=NOW - timedelta(minutes=5)
    )
    assert not decision.allowed
    assert decision.refusals[0].kind == RefusalKind.COOLDOWN
    assert "last model_rollback on churn-xgb@champion was 5m ago, wait 10m" in decision.message
    assert "between model rollbacks of the same model" in decision.message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            POLICY.replace('    models: ["churn-*", "fraud-lgbm"]\n', ""),
            "policy.yaml:4: rules[0].actions: allows model_rollback but names no models",
        ),
        (
            POLICY.replace("[model_rollback]", "[model_rollback, restart]"),
            'policy.yaml:3: rules[0].namespaces: required for restart: add namespaces: ["..."]',
        ),
        (
            POLICY.replace("[model_rollback]", '[restart]\n    namespaces: ["llm-*"]'),
            "rules[0].models: models only apply to model_rollback, which this rule does not allow",
        ),
    ],
    ids=["no-models", "workload-needs-namespaces", "models-without-model-rollback"],
)
def test_model_rules_are_checked_when_the_file_loads(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Policy.from_text(text)
    assert error in caught.value.message


def test_a_model_rollback_request_needs_a_model() -> None:
    with pytest.raises(PayloadError, match="model_rollback needs a registered model name"):
        ActionRequest(ActionKind.MODEL_ROLLBACK, ALICE, None, None)
