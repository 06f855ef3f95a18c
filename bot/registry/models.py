"""Which registered model an incident is about, read from its alert's labels.

The first of these labels that is set names it: `registered_model` (an explicit name, for
alert rules that add it when the served name differs from the registered one), `model_name`
(vLLM, KServe's model server), `model` (Triton), then the KServe InferenceService
(`serving_kserve_io_inferenceservice` as Prometheus relabels the pod label, or
`inferenceservice`). The serving alias is the `model_alias` label, else `champion`.

A models-file mapping (INCIDENT_BOT_MODELS_FILE, from the KPI work) can later translate served
names to registered ones here; until then the names must match or the rule adds
`registered_model`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_ALIAS", "MODEL_LABELS", "ModelRef", "model_of_labels", "parse_model_ref"]

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


def model_of_labels(labels: Mapping[str, str]) -> ModelRef | None:
    for key in MODEL_LABELS:
        value = (labels.get(key) or "").strip()
        if value and _NAME.match(value):
            alias = (labels.get("model_alias") or "").strip()
            return ModelRef(value, alias if alias and _ALIAS.match(alias) else DEFAULT_ALIAS)
    return None


def parse_model_ref(text: str) -> ModelRef:
    """`NAME[@ALIAS]`; ValueError says what is wrong."""
    name, _, alias = text.strip().partition("@")
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a registered model name")
    if alias and not _ALIAS.match(alias):
        raise ValueError(f"{alias!r} is not an alias (letters, digits, '_' and '-')")
    return ModelRef(name, alias or DEFAULT_ALIAS)
