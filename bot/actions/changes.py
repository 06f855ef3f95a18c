"""What an action will change, in words and as the exact API request: the plans of the
Kubernetes and Alertmanager adapters turned into the `Change` a confirmation, a dry run and
the audit trail show. Pure; environment values in pod templates are hidden, since requests
are shown in Slack and kept in the audit trail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.actions.kubernetes import (
    RESTARTED_AT,
    STRATEGIC_MERGE_PATCH,
    ApiRequest,
    DeploymentState,
    RollbackPlan,
    ScalePlan,
)
from bot.actions.policy import ActionKind
from bot.actions.registry import SilenceParams
from bot.actions.silences import Matcher, Silence
from bot.incidents.models import Incident

__all__ = [
    "Change",
    "created_by",
    "matchers_text",
    "redact_env",
    "render_request",
    "restart_change",
    "restart_request",
    "rollback_change",
    "scale_change",
    "silence_change",
    "silence_matches",
]


@dataclass(frozen=True)
class Change:
    """What an action will change (or changed), as people read it. Stored on the action record
    so every later message (approval, result) says the same thing."""

    kind: str  # rollback | scale | restart | silence
    verb: str  # "roll back"
    target: str  # "llm-prod/vllm-llama", or for a silence "2 alerts of INC-3"
    headline: str  # "llama-3-8b v14 -> v13", "replicas 2 -> 4", "for 2h"
    details: tuple[str, ...] = ()  # "revision 3 -> 2", "container vllm: image a -> b", matchers
    warning: str | None = None  # e.g. the GPU shortfall of a scale-up
    request: str | None = None  # the API request(s), rendered, for dry runs and the audit

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["details"] = list(self.details)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            kind=str(data.get("kind", "")),
            verb=str(data.get("verb", "")),
            target=str(data.get("target", "")),
            headline=str(data.get("headline", "")),
            details=tuple(str(d) for d in data.get("details") or ()),
            warning=str(data["warning"]) if data.get("warning") else None,
            request=str(data["request"]) if data.get("request") else None,
        )

    def sentence(self) -> str:
        """'roll back llm-prod/vllm-llama: llama-3-8b v14 -> v13' (plain text)."""
        return (
            f"{self.verb} {self.target}: {self.headline}" if self.headline else f"{self.verb} {self.target}"
        )


def redact_env(value: Any) -> Any:
    """A copy with every container env `value` replaced: an environment variable may hold a
    secret, and requests are shown in Slack and kept in the audit trail."""
    if isinstance(value, dict):
        out = {k: redact_env(v) for k, v in value.items()}
        if isinstance(out.get("env"), list):
            out["env"] = [
                {**e, "value": "<hidden>"} if isinstance(e, dict) and "value" in e else e for e in out["env"]
            ]
        return out
    if isinstance(value, list):
        return [redact_env(v) for v in value]
    return value


def render_request(request: ApiRequest) -> str:
    return replace(request, body=redact_env(request.body)).render()


def created_by(actor_id: str, actor_name: str | None) -> str:
    """Alertmanager's createdBy for a silence made from Slack: the person, by name and ID."""
    return f"{actor_name} ({actor_id})" if actor_name else actor_id


def silence_matches(silence: Silence, labels: Mapping[str, str]) -> bool:
    """Whether `silence` silences an alert with `labels` (Alertmanager's matcher semantics;
    regexes are anchored)."""
    for matcher in silence.matchers:
        value = labels.get(matcher.name, "")
        if matcher.is_regex:
            try:
                hit = re.fullmatch(matcher.value, value) is not None
            except re.error:
                return False
        else:
            hit = value == matcher.value
        if hit != matcher.is_equal:
            return False
    return True


def _model_or_images(state: DeploymentState) -> str:
    return state.model_label() or ", ".join(state.images.values()) or "no containers"


def rollback_change(plan: RollbackPlan) -> Change:
    headline = plan.describe_change()
    details = [f"revision {plan.from_revision} -> {plan.to_revision} (`kubectl rollout undo`)"]
    details += [c for c in plan.changes if c not in (headline, f"model {headline}")]
    details.append(f"now: {plan.current.ready_replicas}/{plan.current.replicas} pods ready")
    return Change(
        kind=ActionKind.ROLLBACK,
        verb="roll back",
        target=f"{plan.namespace}/{plan.name}",
        headline=headline,
        details=tuple(details),
        request=render_request(plan.request),
    )


def scale_change(plan: ScalePlan) -> Change:
    details = [
        f"now: {plan.current.ready_replicas}/{plan.current.replicas} pods ready, "
        f"{_model_or_images(plan.current)}"
    ]
    warning = None
    if plan.gpu is not None:
        details.append(f"GPU check: {plan.gpu.note}")
        if plan.gpu.fits is False:
            warning = (
                f"not enough allocatable {plan.gpu.resource} for the new replicas: {plan.gpu.gpus_needed} "
                f"needed, room for {plan.gpu.pods_that_fit} more pod(s); the rest will stay Pending"
            )
        elif plan.gpu.fits is None:
            warning = f"free {plan.gpu.resource} could not be checked: {plan.gpu.note}"
    elif plan.current.gpus_per_pod and plan.to_replicas < plan.from_replicas:
        freed = (plan.from_replicas - plan.to_replicas) * plan.current.gpus_per_pod
        details.append(f"frees {freed} {plan.current.gpu_resource}")
    return Change(
        kind=ActionKind.SCALE,
        verb="scale",
        target=f"{plan.namespace}/{plan.name}",
        headline=f"replicas {plan.from_replicas} -> {plan.to_replicas}",
        details=tuple(details),
        warning=warning,
        request=render_request(plan.request),
    )


def restart_request(namespace: str, name: str, at: datetime) -> ApiRequest:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    return ApiRequest(
        "PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", STRATEGIC_MERGE_PATCH, body
    )


def restart_change(state: DeploymentState, now: datetime) -> Change:
    revision = f"revision {state.revision} -> {state.revision + 1}" if state.revision else "a new revision"
    return Change(
        kind=ActionKind.RESTART,
        verb="restart",
        target=f"{state.namespace}/{state.name}",
        headline=f"replace all {state.replicas} pod(s), same template ({_model_or_images(state)})",
        details=(
            f"{revision} (`kubectl rollout restart`: a new restartedAt annotation)",
            f"now: {state.ready_replicas}/{state.replicas} pods ready",
        ),
        request=render_request(restart_request(state.namespace, state.name, now)),
    )


def matchers_text(matchers: Sequence[Matcher]) -> str:
    return "{" + ", ".join(m.to_filter() for m in matchers) + "}"


def silence_change(
    incident: Incident,
    alert_matchers: Sequence[Sequence[Matcher]],
    params: SilenceParams,
    *,
    author: str,
    comment: str,
    now: datetime,
) -> Change:
    ends = now + params.length
    bodies = [
        {
            "matchers": [m.to_api() for m in matchers],
            "startsAt": now.isoformat(timespec="seconds"),
            "endsAt": ends.isoformat(timespec="seconds"),
            "createdBy": author,
            "comment": comment,
        }
        for matchers in alert_matchers
    ]
    request = "\n\n".join(
        f"POST /api/v2/silences\nContent-Type: application/json\n\n{json.dumps(body, indent=2)}"
        for body in bodies
    )
    count = len(alert_matchers)
    return Change(
        kind=ActionKind.SILENCE,
        verb="silence",
        target=f"{count} alert{'s' if count != 1 else ''} of {incident.key}",
        headline=f"for {params.duration}",
        details=(*(matchers_text(m) for m in alert_matchers), f"reason: {comment}"),
        request=request,
    )
