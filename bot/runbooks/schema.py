"""The runbook file format, as pydantic models, and its JSON Schema.

The models are the single source of truth: the loader validates files with them, and
`runbooks/runbook.schema.json` is generated from them (`python -m bot.runbooks.gen_schema`) so
editors can complete and check runbooks; a test keeps the shipped file equal to the
generated one. Unknown keys are errors (`extra="forbid"`): a typo must not silently drop a
step at 3 a.m.

Text fields are Jinja2 templates, rendered later against one alert. A parameter that is a
plain literal (no `{{`, `{%` or `{#`) is validated here, at load time, so a bad literal is
reported with its line before any alert arrives; a templated one is validated after
rendering (`RollbackParams`, `ScaleParams`... below), with the same rules.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.durations import parse_duration
from bot.runbooks.errors import MatcherSyntaxError
from bot.runbooks.matchers import parse_matchers

__all__ = [
    "UNITS",
    "ActionSpec",
    "DiagnosticSpec",
    "ExampleAlert",
    "LinkSpec",
    "ModelRollbackActionSpec",
    "ModelRollbackParams",
    "RestartActionSpec",
    "RestartParams",
    "RollbackActionSpec",
    "RollbackParams",
    "RunbookSpec",
    "ScaleActionSpec",
    "ScaleParams",
    "SilenceActionSpec",
    "SilenceParams",
    "is_template",
    "schema_json",
]

_TEMPLATE_MARK = re.compile(r"\{\{|\{%|\{#")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_REPLICAS = 1000

Unit = Literal[
    "seconds",
    "milliseconds",
    "microseconds",
    "percent",
    "ratio",
    "bytes",
    "mebibytes",
    "requests/s",
    "tokens/s",
    "usd",
    "usd/hour",
    "celsius",
    "watts",
    "count",
    "none",
]
UNITS: tuple[str, ...] = get_args(Unit)


def is_template(text: str) -> bool:
    """True when the text holds Jinja syntax and so can only be judged after rendering."""
    return bool(_TEMPLATE_MARK.search(text))


# --- validated parameter values (literals at load time, rendered values at render time) ----------


def check_namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(f"namespace {value!r} is not a valid Kubernetes namespace name (RFC 1123 label)")
    return value


def check_deployment(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"deployment {value!r} is not a valid Kubernetes object name (RFC 1123 subdomain)")
    return value


def _whole_number(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    raise ValueError(f"{what} must be a whole number, got {str(value)!r}")


def check_replicas(value: object) -> int:
    count = _whole_number(value, "replicas")
    if not 0 <= count <= MAX_REPLICAS:
        raise ValueError(f"replicas must be between 0 and {MAX_REPLICAS}, got {count}")
    return count


def check_revision(value: object) -> int:
    revision = _whole_number(value, "revision")
    if revision < 1:
        raise ValueError(f"revision must be 1 or more, got {revision}")
    return revision


def check_silence_duration(value: str) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"silence duration must be longer than zero, got {value!r}")
    return duration


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")


def check_model(value: str) -> str:
    if not _MODEL_NAME.match(value):
        raise ValueError(
            f"model {value!r} is not a registered model name (letters, digits, '_', '-', '.', '/')"
        )
    return value


def check_alias(value: str) -> str:
    if not _ALIAS.match(value):
        raise ValueError(f"alias {value!r} is not a model registry alias (letters, digits, '_' and '-')")
    return value


def check_model_version(value: object) -> str:
    version = _whole_number(str(value).strip().lower().removeprefix("v"), "version")
    if version < 1:
        raise ValueError(f"version must be 1 or more, got {version}")
    return str(version)


def check_url(value: str) -> str:
    if not re.match(r"^https?://[^\s<>|]+$", value):
        raise ValueError(f"url {value!r} must be an http:// or https:// URL without spaces, '<', '>' or '|'")
    return value


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RollbackParams(_Params):
    """`revision` None means the previous revision, like `kubectl rollout undo`."""

    namespace: str
    deployment: str
    revision: int | None = None


class ScaleParams(_Params):
    namespace: str
    deployment: str
    replicas: int


class RestartParams(_Params):
    namespace: str
    deployment: str


class ModelRollbackParams(_Params):
    """`version` None: the version the alias pointed to before. `alias` None: the alias the
    incident's `model_alias` label or the models file gives the model (else `champion`), found
    when the button is clicked, as `/rollback model NAME` does. `restart` None: restart the
    serving Deployments when the incident's labels name them."""

    model: str
    alias: str | None = None
    version: str | None = None
    restart: bool | None = None


class SilenceParams(_Params):
    """Silence the incident's alerts for `duration`; the caller builds the matchers."""

    duration: timedelta
    duration_text: str
    comment: str | None = None


# --- the file format ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _literal(value: Any) -> bool:
    return isinstance(value, str) and not is_template(value)


def _check_matcher(text: str) -> str:
    try:
        parse_matchers(text)
    except MatcherSyntaxError as exc:
        raise ValueError(exc.message) from None
    return text


MatcherText = Annotated[str, AfterValidator(_check_matcher)]


class DiagnosticSpec(_Model):
    """A PromQL query run when the incident opens (and for baselines: an hour and a week earlier)."""

    title: str = Field(min_length=1, description="Short title (template, Slack mrkdwn).")
    query: str = Field(
        min_length=1,
        description="PromQL (template); label values are escaped for PromQL double-quoted strings.",
    )
    type: Literal["instant", "range"] = Field("range", description="Instant value or a graph over `range`.")
    unit: Unit = Field("none", description="Unit of the result, used to format values and axes.")
    range: str | None = Field(
        None, description="Range queries only: how far back to graph (Prometheus duration, default 1h)."
    )
    step: str | None = Field(None, description="Range queries only: resolution (Prometheus duration).")
    when: list[MatcherText] = Field(
        default_factory=list,
        description="Run only for alerts matching these (labels; annotations as annotations.<name>).",
    )

    @field_validator("range", "step")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= timedelta(0):
            raise ValueError(f"duration must be longer than zero, got {value!r}")
        return value

    @model_validator(mode="after")
    def _instant_has_no_range(self) -> DiagnosticSpec:
        if self.type == "instant" and (self.range is not None or self.step is not None):
            raise ValueError("range and step apply only to type: range queries")
        return self


class LinkSpec(_Model):
    title: str = Field(min_length=1, description="Link text (template).")
    url: str = Field(
        min_length=1, description="http(s) URL (template; label values are URL-encoded when inserted)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value) if _literal(value) else value


class _ActionSpec(_Model):
    label: str | None = Field(None, description="Button text (template); a sensible default otherwise.")
    when: list[MatcherText] = Field(
        default_factory=list,
        description="Offer the button only for alerts matching these (annotations as annotations.<name>).",
    )


class _WorkloadActionSpec(_ActionSpec):
    namespace: str = Field(min_length=1, description="Namespace (template, e.g. '{{ labels.namespace }}').")
    deployment: str = Field(min_length=1, description="Deployment name (template).")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_namespace(value) if _literal(value) else value

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, value: str) -> str:
        return check_deployment(value) if _literal(value) else value


class RollbackActionSpec(_WorkloadActionSpec):
    """Roll the deployment back (`kubectl rollout undo`): for a bad model or image rollout."""

    action: Literal["rollback"]
    revision: int | str | None = Field(
        None, description="Revision to return to (template or number); the previous one if omitted."
    )

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: int | str | None) -> int | str | None:
        if value is None or (isinstance(value, str) and is_template(value)):
            return value
        return check_revision(value)


class ScaleActionSpec(_WorkloadActionSpec):
    """Set the replica count: for queueing and saturation."""

    action: Literal["scale"]
    replicas: int | str = Field(description="Replica count (number, or a template that renders to one).")

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int | str) -> int | str:
        if isinstance(value, str) and is_template(value):
            return value
        return check_replicas(value)


class RestartActionSpec(_WorkloadActionSpec):
    """Rolling restart (`kubectl rollout restart`): for a hung engine."""

    action: Literal["restart"]


class ModelRollbackActionSpec(_ActionSpec):
    """Move a model registry (MLflow) alias back: for a bad model version released through
    the registry. Needs MLFLOW_TRACKING_URI."""

    action: Literal["model_rollback"]
    model: str = Field(
        min_length=1, description="Registered model name (template, e.g. '{{ labels.model_name }}')."
    )
    alias: str | None = Field(
        None,
        min_length=1,
        description=(
            "The serving alias (template); if omitted, the incident's model_alias label, else the models "
            "file's alias for the model, else champion."
        ),
    )
    version: int | str | None = Field(
        None, description="Version to return to; the one the alias pointed to before if omitted."
    )
    restart: bool | None = Field(
        None,
        description=(
            "Restart the serving Deployments after the alias moves, so they load the version: true, "
            "false, or omitted (restart when the incident's labels name them)."
        ),
    )

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_model(value) if _literal(value) else value

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        return check_alias(value) if value is not None and _literal(value) else value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | str | None) -> int | str | None:
        if value is None or (isinstance(value, str) and is_template(value)):
            return value
        return check_model_version(value)


class SilenceActionSpec(_ActionSpec):
    """Silence the incident's alerts in Alertmanager for `duration`."""

    action: Literal["silence"]
    duration: str = Field(description="How long, as a Prometheus duration: 30m, 2h, 1d.")
    comment: str | None = Field(None, description="Silence comment (template).")

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        if _literal(value):
            check_silence_duration(value)
        return value


ActionSpec = Annotated[
    Union[  # noqa: UP007
        RollbackActionSpec, ScaleActionSpec, RestartActionSpec, SilenceActionSpec, ModelRollbackActionSpec
    ],
    Field(discriminator="action"),
]


class ExampleAlert(_Model):
    """An alert as Alertmanager would send it, to test the runbook against (`runbooks test`)."""

    labels: dict[str, str] = Field(description="Alert labels; must satisfy `match`.")
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"


class RunbookSpec(_Model):
    """One runbook: which alerts it covers, what to look at, what to do, which buttons to offer."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="incident-bot runbook",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Unique name (lowercase letters, digits and '-').",
    )
    description: str = Field(min_length=1, description="What the alert means (template, Slack mrkdwn).")
    match: list[MatcherText] = Field(
        min_length=1,
        description='Alertmanager matchers on alert labels, all must hold: name="v", !=, =~, !~.',
    )
    diagnostics: list[DiagnosticSpec] = Field(default_factory=list)
    steps: list[str] = Field(
        default_factory=list,
        description="Ordered steps (templates, Slack mrkdwn; **bold** and [t](url) work).",
    )
    links: list[LinkSpec] = Field(default_factory=list)
    actions: list[ActionSpec] = Field(default_factory=list)
    recovery_query: str | None = Field(
        None, description="PromQL (template) whose value shows the service has recovered."
    )
    examples: list[ExampleAlert] = Field(
        default_factory=list, description="Example alerts the runbook is tested against."
    )


def schema_json() -> str:
    """The JSON Schema of a runbook file, as shipped in `runbooks/runbook.schema.json`."""
    return json.dumps(RunbookSpec.model_json_schema(), indent=2) + "\n"
