"""The actions responders can run, as a typed registry: each kind has one pydantic parameter
model, registered with `@action`, and every way of asking for an action (a runbook button's
stored offer, `/rollback`, `/scale`, `/incident silence`) is validated against it.

A stored offer is validated again when its button is clicked (`parse_params`): the record is
ours, but a runbook edited since, or a row written by an older version, must fail with a
message naming the bad field rather than reach the Kubernetes API.

Silences carry no target here: the incident's alerts say what to silence, so the parameters
are only how long and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bot.actions.policy import ActionKind
from bot.actions.silence_durations import MAX_SILENCE_DURATION
from bot.errors import PayloadError

__all__ = [
    "REGISTRY",
    "ActionParams",
    "ActionSpec",
    "ModelRollbackParams",
    "RestartParams",
    "RollbackParams",
    "ScaleParams",
    "SilenceParams",
    "WorkloadParams",
    "action",
    "parse_params",
    "spec_of",
]

# Kubernetes object names: RFC 1123 labels (namespaces) and subdomains (deployments).
Namespace = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
DeploymentName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
]
MAX_REPLICAS = 10_000
# MLflow registered model names and aliases, as far as a label or a command can carry them.
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}$")]
AliasName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")]
# A Deployment to restart after a model rollback: `namespace/deployment`.
DeploymentTarget = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=317
    ),
]
MAX_RESTARTS = 5


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class ActionSpec:
    """One kind of action: its parameters and how messages speak of it."""

    kind: ActionKind
    params: type[BaseModel]
    verb: str  # "roll back": "Confirm: roll back llm-prod/vllm"
    done: str  # "rolled back": "@alice rolled back llm-prod/vllm"
    noun: str  # "rollback": "the rollback of llm-prod/vllm"

    @property
    def workload(self) -> bool:
        return issubclass(self.params, WorkloadParams)


REGISTRY: dict[ActionKind, ActionSpec] = {}


def action(kind: ActionKind, *, verb: str, done: str) -> Callable[[type[P]], type[P]]:
    """Register `params` as the parameter model of `kind` (once per kind)."""

    def register(params: type[P]) -> type[P]:
        if kind in REGISTRY:
            raise ValueError(f"action {kind} is registered twice")
        REGISTRY[kind] = ActionSpec(kind, params, verb, done, kind.value)
        return params

    return register


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkloadParams(_Params):
    namespace: Namespace
    deployment: DeploymentName

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.deployment}"


@action(ActionKind.ROLLBACK, verb="roll back", done="rolled back")
class RollbackParams(WorkloadParams):
    """`revision` None is the previous revision, like `kubectl rollout undo`."""

    revision: int | None = Field(None, ge=1)


@action(ActionKind.SCALE, verb="scale", done="scaled")
class ScaleParams(WorkloadParams):
    replicas: int = Field(ge=0, le=MAX_REPLICAS)


@action(ActionKind.RESTART, verb="restart", done="restarted")
class RestartParams(WorkloadParams):
    pass


@action(ActionKind.SILENCE, verb="silence", done="silenced")
class SilenceParams(_Params):
    """How long and why; `duration` is the text the person (or runbook) wrote, for messages."""

    duration_seconds: int = Field(gt=0, le=int(MAX_SILENCE_DURATION.total_seconds()))
    duration: str = Field(min_length=1, max_length=40)
    comment: str | None = Field(None, max_length=3000)

    @property
    def length(self) -> timedelta:
        return timedelta(seconds=self.duration_seconds)


@action(ActionKind.MODEL_ROLLBACK, verb="roll back", done="rolled back")
class ModelRollbackParams(_Params):
    """Move a registry alias back: to `version`, or (None) to the version it pointed to before.
    `model` is the registered model's name, `alias` the serving alias.

    Then restart the Deployments that serve it, so they load the version: `deployments`
    (`namespace/deployment`, from `--restart`) when given; else, unless `restart` is False,
    those the incident's labels name (bot/flows/model_restarts.py). `restart` True insists:
    without a known Deployment the request fails instead of moving only the alias."""

    model: ModelName
    alias: AliasName = "champion"
    version: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,9}$")] | None = None
    restart: bool | None = None
    deployments: tuple[DeploymentTarget, ...] = Field((), max_length=MAX_RESTARTS)

    @property
    def target(self) -> str:
        return f"{self.model}@{self.alias}"

    @property
    def restart_asked(self) -> bool:
        """The requester asked for the restart explicitly (a refusal of it refuses the request)."""
        return bool(self.deployments) or self.restart is True


ActionParams = RollbackParams | ScaleParams | RestartParams | SilenceParams | ModelRollbackParams


def spec_of(kind: str | ActionKind) -> ActionSpec:
    try:
        return REGISTRY[ActionKind(kind)]
    except (ValueError, KeyError):
        names = ", ".join(k.value for k in REGISTRY)
        raise PayloadError(f"unknown action {kind!r} (actions: {names})") from None


def _problem(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "parameters"
    if err["type"] == "string_pattern_mismatch" and where.startswith("deployments"):
        return f"{err['input']!r} is not <namespace>/<deployment> (Kubernetes names)"
    if err["type"] == "string_pattern_mismatch" and where in ("model", "alias", "version"):
        what = {"model": "a registered model name", "alias": "an alias", "version": "a version number"}[where]
        return f"{where} {err['input']!r} is not {what}"
    if err["type"] == "string_pattern_mismatch":
        return (
            f"{where} {err['input']!r} is not a Kubernetes name "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    return f"{where}: {str(err['msg']).lower()}"


def parse_params(kind: str | ActionKind, raw: Mapping[str, Any]) -> ActionParams:
    """Validate `raw` for `kind`; PayloadError names each bad field and what was wrong."""
    spec = spec_of(kind)
    try:
        params = spec.params.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors(include_url=False))
        raise PayloadError(f"bad {spec.noun} parameters: {problems}") from None
    assert isinstance(
        params, RollbackParams | ScaleParams | RestartParams | SilenceParams | ModelRollbackParams
    )
    return params
