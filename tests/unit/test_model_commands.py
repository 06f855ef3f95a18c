"""`/rollback model NAME[@ALIAS] [VERSION] [--dry-run]`: what is parsed and what is refused
with the usage."""

from __future__ import annotations

import pytest

from bot.slack.commands import ModelRollback, Rollback, UsageError, parse_rollback


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("model churn-xgb", ModelRollback("churn-xgb", None, None, False)),
        ("model churn-xgb@production 3", ModelRollback("churn-xgb", "production", "3", False)),
        ("MODEL churn-xgb v12 --dry-run", ModelRollback("churn-xgb", None, "12", True)),
        ("model team/churn.xgb_2@champion", ModelRollback("team/churn.xgb_2", "champion", None, False)),
        (
            "model churn-xgb 2 --restart ml/churn-svc --restart=ml/churn-canary --restart ml/churn-svc",
            ModelRollback("churn-xgb", None, "2", False, True, ("ml/churn-svc", "ml/churn-canary")),
        ),
        ("model churn-xgb --no-restart --dry-run", ModelRollback("churn-xgb", None, None, True, False)),
    ],
)
def test_model_rollbacks_are_parsed(text: str, parsed: ModelRollback) -> None:
    assert parse_rollback(text) == parsed


def test_a_deployment_rollback_is_still_a_deployment_rollback() -> None:
    assert parse_rollback("llm-prod/vllm 3") == Rollback("llm-prod", "vllm", 3, False)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model", "`/rollback model` needs a model name."),
        ("model churn-xgb 3 4", "`/rollback model` takes at most a version."),
        ("model churn-xgb latest", "`latest` is not a model version number."),
        ("model churn-xgb 0", "`0` is not a model version number."),
        ("model churn-xgb@9lives", "Model_rollback parameters: alias '9lives' is not an alias."),
        ("model -churn", "Model_rollback parameters: model '-churn' is not a registered model name."),
        (
            "model churn-xgb --restart",
            "`--restart` needs the Deployment to restart: `--restart <namespace>/<deployment>`.",
        ),
        ("model churn-xgb --restart churn-svc", "`churn-svc` is not `<namespace>/<deployment>`."),
        (
            "model churn-xgb --restart ml/churn-svc --no-restart",
            "`--restart` and `--no-restart` contradict each other.",
        ),
        (
            "model churn-xgb --restart ml/Churn_Svc",
            "Model_rollback parameters: 'ml/Churn_Svc' is not <namespace>/<deployment> (Kubernetes names).",
        ),
    ],
)
def test_bad_model_rollbacks_name_the_problem_and_show_the_usage(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_rollback(text)
    assert caught.value.message == problem
    assert "/rollback model <name>[@<alias>] [version]" in caught.value.usage
