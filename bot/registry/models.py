"""Which registered model an incident is about, read from its alert's labels.

The first of these labels that is set names it: `registered_model` (an explicit name, for
alert rules that add it when the served name differs from the registered one), `model_name`
(vLLM, KServe's model server), `model` (Triton), then the KServe InferenceService
(`serving_kserve_io_inferenceservice` as Prometheus relabels the pod label, or
`inferenceservice`). That served name goes through the models file (INCIDENT_BOT_MODELS_FILE,
bot/kpis/models_file.py), passed in explicitly: an entry for it (in the alert's namespace, or
in any) gives its `registered_model` when the registered name differs, and its serving
`alias`. The `model_alias` label wins over the file's alias; without either it is `champion`.
An explicit `registered_model` label is taken as the registered name as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.kpis.models_file import ModelsFile, ModelSpec

__all__ = [
    "DEFAULT_ALIAS",
    "MODEL_LABELS",
    "ModelRef",
    "model_of_labels",
    "parse_model_ref",
    "rollback_values",
    "spec_for_registered",
]

DEFAULT_ALIAS = "champion"
MODEL_LABELS = (
    "registered_model",
    "model_name",
    "model",
    "serving_kserve_io_inferenceservice",
    "inferenceservice",
)
# MLflow accepts most characters in names; the bot takes what a label or a command can carry.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str = DEFAULT_ALIAS

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}"


def model_of_labels(labels: Mapping[str, str], models: ModelsFile) -> ModelRef | None:
    for key in MODEL_LABELS:
        value = (labels.get(key) or "").strip()
        if value and _NAME.match(value):
            spec = (
                None if key == "registered_model" else models.spec_for(value, labels.get("namespace") or "")
            )
            label_alias = (labels.get("model_alias") or "").strip()
            if label_alias and _ALIAS.match(label_alias):
                alias = label_alias
            else:
                alias = spec.alias if spec is not None else DEFAULT_ALIAS
            return ModelRef(spec.registered_name if spec is not None else value, alias)
    return None


def spec_for_registered(models: ModelsFile, name: str) -> ModelSpec | None:
    """The models-file entry for a name given in `/rollback model NAME`: the entry whose
    registered model it is, else the entry serving it under that name."""
    return next((s for s in models.specs if s.registered_name == name), None) or next(
        (s for s in models.specs if s.model == name), None
    )


def rollback_values(raw: Mapping[str, Any], models: ModelsFile) -> dict[str, Any]:
    """A model rollback's parameters with the models file applied: a served name becomes its
    registered model, and a missing alias becomes the entry's alias (else `champion`)."""
    values = dict(raw)
    name = values.get("model")
    spec = spec_for_registered(models, name) if isinstance(name, str) else None
    if spec is not None:
        values["model"] = spec.registered_name
    if not values.get("alias"):
        values["alias"] = spec.alias if spec is not None else DEFAULT_ALIAS
    return values


def parse_model_ref(text: str) -> ModelRef:
    """`NAME[@ALIAS]`; ValueError says what is wrong."""
    name, _, alias = text.strip().partition("@")
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a registered model name")
    if alias and not _ALIAS.match(alias):
        raise ValueError(f"{alias!r} is not an alias (letters, digits, '_' and '-')")
    return ModelRef(name, alias or DEFAULT_ALIAS)
