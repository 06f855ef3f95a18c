"""Which registered model and alias an incident or a `/rollback model` is about, with the
models file (INCIDENT_BOT_MODELS_FILE) mapping served names to registered ones."""

from __future__ import annotations

from bot.kpis.models_file import ModelsFile
from bot.registry.models import ModelRef, model_of_labels, rollback_values

MODELS = ModelsFile.from_text(
    """\
models:
  - model: churn
    registered_model: churn-xgb
    alias: prod
  - model: fraud
    namespace: risk
    alias: live
  - model: llama
"""
)


def test_labels_go_through_the_models_file() -> None:
    assert model_of_labels({"model_name": "churn"}, MODELS) == ModelRef("churn-xgb", "prod")
    assert model_of_labels({"model": "fraud", "namespace": "risk"}, MODELS) == ModelRef("fraud", "live")
    # The entry is for another namespace: the name and the default alias stand.
    assert model_of_labels({"model": "fraud", "namespace": "dev"}, MODELS) == ModelRef("fraud", "champion")
    assert model_of_labels({"model_name": "llama"}, MODELS) == ModelRef("llama", "champion")
    # The alert rule's own alias wins; an explicit registered_model label is taken as it is.
    assert model_of_labels({"model_name": "churn", "model_alias": "shadow"}, MODELS) == ModelRef(
        "churn-xgb", "shadow"
    )
    assert model_of_labels({"registered_model": "churn"}, MODELS) == ModelRef("churn", "champion")
    assert model_of_labels({"model_name": "churn"}, ModelsFile()) == ModelRef("churn", "champion")


def test_rollback_takes_the_alias_from_the_file_unless_given() -> None:
    assert rollback_values({"model": "churn-xgb", "alias": None}, MODELS)["alias"] == "prod"
    assert rollback_values({"model": "churn-xgb", "alias": "shadow"}, MODELS)["alias"] == "shadow"
    # Named by its served name: the registered model is the one moved.
    assert rollback_values({"model": "churn", "alias": None}, MODELS) == {
        "model": "churn-xgb",
        "alias": "prod",
    }
    assert rollback_values({"model": "other", "alias": None}, MODELS) == {
        "model": "other",
        "alias": "champion",
    }
