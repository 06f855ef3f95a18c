"""`INCIDENT_BOT_MODELS_FILE`: what discovery cannot know about a model.

Models are found in Prometheus (bot/kpis/discovery.py); this optional YAML file adds, per
model, a display name, its owners (Slack user IDs `U...`/`W...` or user group IDs `S...`)
and their channel, SLO targets, a GPU-hour price for cost per 1k requests when no cost
metric exists, and PromQL overrides of any KPI. It is validated when the bot starts and
every mistake is reported as `file:line: message` by the loader runbooks, policy and routing
share (bot/configfile.py).

```yaml
models:
  - model: meta-llama/Llama-3.1-8B-Instruct   # as discovered (vLLM model_name, Triton model, ...)
    namespace: llm-prod                      # optional: only this namespace's deployment
    display_name: Llama 3.1 8B chat
    owners: [U0123ABCD, S04LLMTEAM]
    owners_channel: C0LLMOWNERS
    slo: {uptime_pct: 99.5, latency_p99_seconds: 4}
    gpu_hour_usd: 2.5
    queries:                                 # {window} is replaced by the window, e.g. 7d
      drift_score: max(last_over_time(my_drift{model="llama"}[{window}]))
  - model: churn                             # the served name, as in the alerts' labels
    registered_model: churn-xgb              # its MLflow registered model, when the name differs
    alias: prod                              # the serving alias (default champion)
```

`registered_model` and `alias` tell the model registry work (bot/registry/models.py) which
MLflow registered model an incident is about and which alias `/rollback model` moves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.configfile import compose_yaml, validation_errors
from bot.errors import ConfigError

__all__ = ["KPI_NAMES", "ModelSpec", "ModelsFile", "ModelsFileError", "Slo"]

#: The KPIs computed from Prometheus, which a models file may override with its own PromQL.
KPI_NAMES = (
    "uptime_pct",
    "latency_p99_seconds",
    "requests_per_second",
    "error_ratio",
    "cost_per_1k_usd",
    "drift_score",
)
_OWNER = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
# As bot/registry/models.py accepts them from labels and commands.
_REGISTERED = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}$"
_ALIAS = r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$"


class ModelsFileError(ConfigError):
    """The models file is unreadable or invalid; `errors` lists every `file:line: message`."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = tuple(errors)


class Slo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uptime_pct: float | None = Field(None, gt=0, le=100)
    latency_p99_seconds: float | None = Field(None, gt=0)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    namespace: str | None = None
    display_name: str | None = None
    owners: tuple[str, ...] = ()
    owners_channel: str | None = None
    slo: Slo = Field(default_factory=Slo)
    gpu_hour_usd: float | None = Field(None, gt=0)
    queries: dict[str, str] = Field(default_factory=dict)
    registered_model: str | None = Field(None, pattern=_REGISTERED)
    alias: str = Field("champion", pattern=_ALIAS)

    @property
    def registered_name(self) -> str:
        """The MLflow registered model: `registered_model`, else the served name itself."""
        return self.registered_model or self.model

    @field_validator("owners")
    @classmethod
    def _owner_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for owner in value:
            if not _OWNER.match(owner):
                raise ValueError(
                    f"owner {owner!r} is not a Slack user ID (U...) or user group ID (S...): "
                    "names can change, IDs cannot"
                )
        return value

    @field_validator("owners_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel ID (C... or G...)")
        return value

    @field_validator("queries")
    @classmethod
    def _known_kpis(cls, value: dict[str, str]) -> dict[str, str]:
        for name, query in value.items():
            if name not in KPI_NAMES:
                raise ValueError(f"unknown KPI {name!r} (overridable: {', '.join(KPI_NAMES)})")
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"the query for {name!r} is empty")
        return value

    def matches(self, model: str, namespace: str) -> bool:
        return self.model == model and (self.namespace is None or self.namespace == namespace)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class ModelsFile:
    """The loaded file; an empty one (no path) knows nothing beyond discovery."""

    specs: tuple[ModelSpec, ...] = ()
    source: str | None = None

    def spec_for(self, model: str, namespace: str) -> ModelSpec | None:
        """The first entry naming this model (in this namespace, or in any)."""
        return next((s for s in self.specs if s.matches(model, namespace)), None)

    @classmethod
    def load(cls, path: Path | None) -> ModelsFile:
        if path is None:
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelsFileError(
                [f"{path}: cannot read the models file (INCIDENT_BOT_MODELS_FILE): {exc.strerror}"]
            ) from exc
        except UnicodeDecodeError as exc:
            raise ModelsFileError([f"{path}: the models file is not UTF-8 text"]) from exc
        return cls.from_text(text, display=str(path))

    @classmethod
    def from_text(cls, text: str, *, display: str = "models.yaml") -> ModelsFile:
        data, source, problems = compose_yaml(text, display)
        if problems:
            raise ModelsFileError([f"{display}:{p.line}: {p.message}" for p in problems])
        if data is None:
            return cls(source=display)
        if not isinstance(data, dict):
            raise ModelsFileError([f"{display}:1: expected a mapping with 'models:' (a list of models)"])
        try:
            spec = _File.model_validate(data)
        except ValidationError as exc:
            raise ModelsFileError(validation_errors(exc, source, data, model=_File)) from None
        seen: dict[tuple[str, str | None], int] = {}
        duplicates: list[str] = []
        for index, model in enumerate(spec.models):
            key = (model.model, model.namespace)
            if key in seen:
                duplicates.append(
                    f"{source.where(('models', index, 'model'))}: models[{index}]: {model.model!r}"
                    f" is already described in models[{seen[key]}]"
                )
            seen.setdefault(key, index)
        if duplicates:
            raise ModelsFileError(duplicates)
        return cls(specs=tuple(spec.models), source=display)
