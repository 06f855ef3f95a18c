"""The bot's Kubernetes workloads adapter: describe, history, roll back, scale, restart.

Domain verbs over the official `kubernetes` client, which blocks: every method is sync and the
caller runs it in a thread. The adapter owns the wire details, error translation and the few
retries that are safe, so flows only see `DeploymentState`, plans and `ActionResult`s.

How each action talks to the API server (the shared PROTOCOLS.md, section 4):
- rollback is `kubectl rollout undo`'s algorithm (kubectl polymorphichelpers/rollback.go):
  owned ReplicaSets by `deployment.kubernetes.io/revision`, refuse paused, skip when the
  template already matches (ignoring `pod-template-hash`), then a JSON Patch replacing
  `/spec/template` and `/metadata/annotations`. The patch also replaces
  `/metadata/resourceVersion` with the version it was computed from: the API server treats a
  resourceVersion in the patched object as a precondition and answers 409 Conflict when
  someone wrote in between (the mechanism of `kubectl annotate --resource-version`). A JSON
  Patch `test` op would be refused with an uninformative 422 instead.
- scale patches the `scale` subresource with `{"spec": {"replicas": N}}` (kubectl scale).
- restart sets `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]` with a
  strategic merge patch (kubectl rollout restart, objectrestarter.go).
- dry runs are server-side (`dryRun=All`, as `kubectl --dry-run=server`): the API server
  validates and authorizes the exact request and stores nothing.

The Python client sends a list body as `application/json-patch+json` and turns any dict body
into `application/strategic-merge-patch+json` (kubernetes/client/rest.py, v31 and v37 alike);
`ApiRequest.content_type` records what goes on the wire.

Responses are read as raw JSON (`_preload_content=False`) rather than client models: the
rollback copies a ReplicaSet's pod template back verbatim, which a round trip through typed
models could alter, and raw JSON reads the same across client versions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, overload
from urllib.parse import urlencode

from bot.actions.model_info import count, identify_model, pod_gpu_request, pod_resource_request
from bot.errors import (
    ConfigError,
    Conflict,
    NotFound,
    PayloadError,
    PermanentUpstreamError,
    RetryableUpstreamError,
)
from bot.retry import is_retryable_status, retry_after_seconds

# The official client is imported where a cluster is used (`Workloads`), not with this module:
# a bot without a cluster (NoKubernetes) imports this module for its types and plans, and
# loading the client's hundreds of model classes would cost it about 12 MB of resident memory
# (BENCHMARKS.md, memory).
if TYPE_CHECKING:
    import kubernetes.client
    from kubernetes.client.exceptions import ApiException

__all__ = [
    "KUBERNETES_MISSING",
    "RBAC_REQUIREMENTS",
    "ActionResult",
    "AlreadyMatches",
    "ApiRequest",
    "DeploymentPaused",
    "DeploymentState",
    "GpuCheck",
    "KubernetesForbidden",
    "NoKubernetes",
    "PlanOutdated",
    "RbacRule",
    "Revision",
    "RevisionNotFound",
    "RollbackPlan",
    "RolloutHistoryMissing",
    "ScalePlan",
    "Workloads",
    "WorkloadsApi",
    "deployment_state",
    "equal_ignore_hash",
    "template_digest",
]

logger = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH = "pod-template-hash"
# Kept from the Deployment, never copied from the ReplicaSet, on rollback (rollback.go annotationsToSkip).
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"  # what the client sends for dicts
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"  # as `kubectl describe node`
_PAGE_SIZE = 500


# ---------------------------------------------------------------------------------------------
# RBAC


@dataclass(frozen=True)
class RbacRule:
    """One permission the bot's ServiceAccount needs. `cluster_scope`: needs a ClusterRole."""

    verb: str
    api_group: str
    resource: str
    cluster_scope: bool = False


_GET_DEPLOYMENT = RbacRule("get", "apps", "deployments")
_LIST_REPLICASETS = RbacRule("list", "apps", "replicasets")
_PATCH_DEPLOYMENT = RbacRule("patch", "apps", "deployments")
_PATCH_SCALE = RbacRule("patch", "apps", "deployments/scale")
_LIST_NODES = RbacRule("list", "", "nodes", cluster_scope=True)
_LIST_PODS = RbacRule("list", "", "pods", cluster_scope=True)

# Every (verb, apiGroup, resource) each public method sends, so the shipped Role can be checked
# against it. Dry runs need the same verbs: the API server authorizes them like real writes.
RBAC_REQUIREMENTS: Mapping[str, tuple[RbacRule, ...]] = MappingProxyType(
    {
        "describe": (_GET_DEPLOYMENT,),
        "history": (_GET_DEPLOYMENT, _LIST_REPLICASETS),
        "plan_rollback": (_GET_DEPLOYMENT, _LIST_REPLICASETS),
        "rollback": (_GET_DEPLOYMENT, _LIST_REPLICASETS, _PATCH_DEPLOYMENT),
        "plan_scale": (_GET_DEPLOYMENT, _LIST_NODES, _LIST_PODS),
        "scale": (_GET_DEPLOYMENT, _PATCH_SCALE),
        "restart": (_GET_DEPLOYMENT, _PATCH_DEPLOYMENT),
    }
)


# ---------------------------------------------------------------------------------------------
# Errors


class KubernetesForbidden(PermanentUpstreamError):
    """403: the bot's ServiceAccount lacks an RBAC permission; names the missing verb and resource."""

    def __init__(
        self, message: str, *, verb: str, api_group: str, resource: str, namespace: str | None
    ) -> None:
        super().__init__(message)
        self.verb = verb
        self.api_group = api_group
        self.resource = resource
        self.namespace = namespace


class RolloutHistoryMissing(NotFound):
    """The Deployment has no previous revision to roll back to."""


class RevisionNotFound(NotFound):
    """The asked-for revision is not among the Deployment's ReplicaSets."""

    def __init__(self, message: str, *, revision: int, available: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.revision = revision
        self.available = tuple(available)


class DeploymentPaused(Conflict):
    """A paused Deployment cannot be rolled back or restarted until it is resumed."""


class AlreadyMatches(Conflict):
    """The Deployment already runs the target revision's template: nothing to roll back."""

    def __init__(self, message: str, *, revision: int) -> None:
        super().__init__(message)
        self.revision = revision


class PlanOutdated(Conflict):
    """The Deployment changed between the plan a responder confirmed and its execution."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ApiRequest:
    """One API request exactly as the client puts it on the wire (without `dryRun`)."""

    method: str
    path: str
    content_type: str | None
    body: Any
    query: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """HTTP-like text for a Slack code block."""
        query = f"?{urlencode(dict(self.query))}" if self.query else ""
        head = f"{self.method} {self.path}{query}"
        if self.content_type:
            head += f"\nContent-Type: {self.content_type}"
        return f"{head}\n\n{json.dumps(self.body, indent=2)}" if self.body is not None else head


@dataclass(frozen=True)
class DeploymentState:
    """What responders want to know about a Deployment, read from one GET."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    observed_generation: int
    replicas: int  # spec.replicas: what is asked for
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    revision: int | None  # deployment.kubernetes.io/revision
    images: Mapping[str, str]  # container name -> image (init containers left out)
    model: str | None
    model_version: str | None
    model_version_source: str | None  # where model_version was read, e.g. 'argument --revision'
    paused: bool
    gpu_resource: str | None  # e.g. "nvidia.com/gpu"
    gpus_per_pod: int
    change_cause: str | None  # kubernetes.io/change-cause

    @property
    def settled(self) -> bool:
        """The controller has seen the latest spec and every pod is updated and available."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == self.replicas
            and self.available_replicas == self.replicas
        )

    def model_label(self) -> str | None:
        """'llama-3-8b v14', 'llama-3-8b', or None when the model's name is unknown."""
        if not self.model:
            return None
        return f"{self.model} {self.model_version}" if self.model_version else self.model

    def summary(self) -> str:
        """One line, e.g. 'llm-prod/vllm: 2/3 ready, revision 14, llama-3-8b v14 (vllm-openai:v0.6.3)'."""
        parts = [f"{self.ready_replicas}/{self.replicas} ready"]
        if self.revision is not None:
            parts.append(f"revision {self.revision}")
        model = self.model_label()
        images = ", ".join(self.images.values())
        parts.append(f"{model} ({images})" if model else images)
        if self.paused:
            parts.append("paused")
        return f"{self.namespace}/{self.name}: " + ", ".join(parts)


@dataclass(frozen=True)
class Revision:
    """One entry of `kubectl rollout history`: an owned ReplicaSet."""

    revision: int
    replicaset: str
    created_at: datetime | None
    images: Mapping[str, str]
    model: str | None
    model_version: str | None
    change_cause: str | None
    replicas: int
    current: bool  # its template is the Deployment's current one
    model_version_source: str | None = None  # where model_version was read


@dataclass(frozen=True)
class GpuCheck:
    """Whether the extra replicas of a scale-up fit into the cluster's free accelerators.

    `free`/`pods_that_fit` count schedulable, Ready nodes only, minus what pods already bound
    to them request. Pods still Pending for accelerators are reported, not subtracted.
    """

    resource: str
    gpus_per_pod: int
    extra_pods: int
    gpus_needed: int
    allocatable: int
    requested: int
    free: int
    pods_that_fit: int
    pending_pods: int
    fits: bool | None  # None: could not be checked (see note)
    note: str


@dataclass(frozen=True)
class RollbackPlan:
    """Exactly what a rollback will change, for a responder to confirm."""

    namespace: str
    name: str
    current: DeploymentState
    target: Revision
    template: Mapping[str, Any]  # the pod template that will be written
    current_template: Mapping[str, Any]  # the pod template it replaces
    annotations: Mapping[str, str]  # the Deployment annotations that will be written
    request: ApiRequest
    changes: tuple[str, ...]  # human-readable differences, most important first

    @property
    def from_revision(self) -> int | None:
        return self.current.revision

    @property
    def to_revision(self) -> int:
        return self.target.revision

    def describe_change(self) -> str:
        """'llama-3-8b v14 -> v13', else the image change, else the revision numbers."""
        return _describe_template_change(
            self.current.model,
            self.current.model_version,
            self.target.model,
            self.target.model_version,
            self.current.images,
            self.target.images,
            f"revision {self.from_revision} -> revision {self.to_revision}",
            versions_named=_named_version(self.current.model_version_source)
            and _named_version(self.target.model_version_source),
        )

    def summary(self) -> str:
        return (
            f"roll back {self.namespace}/{self.name} from revision {self.from_revision} "
            f"to revision {self.to_revision}: {self.describe_change()}"
        )


@dataclass(frozen=True)
class ScalePlan:
    """A scale from the current replica count to `replicas`, with the accelerator check."""

    namespace: str
    name: str
    current: DeploymentState
    replicas: int
    gpu: GpuCheck | None  # None when no accelerators are requested or nothing is added
    request: ApiRequest

    @property
    def from_replicas(self) -> int:
        return self.current.replicas

    @property
    def to_replicas(self) -> int:
        return self.replicas

    @property
    def fits(self) -> bool | None:
        return True if self.gpu is None else self.gpu.fits

    def describe_change(self) -> str:
        text = f"replicas {self.from_replicas} -> {self.to_replicas}"
        if self.gpu is not None:
            text += f" ({self.gpu.note})"
        elif self.current.gpus_per_pod and self.to_replicas < self.from_replicas:
            freed = (self.from_replicas - self.to_replicas) * self.current.gpus_per_pod
            text += f" (frees {freed} {self.current.gpu_resource})"
        return text


@dataclass(frozen=True)
class ActionResult:
    """What an action did (or, for a dry run, would do), with before/after state."""

    action: str  # "rollback" | "scale" | "restart"
    namespace: str
    name: str
    dry_run: bool
    before: DeploymentState
    after: DeploymentState  # dry run: the API server's answer; revision predicted by the controller's rule
    request: ApiRequest  # the request that makes the change (a dry run sent it with dryRun=All)
    message: str
    attempts: int = 1  # more than 1 after retried conflicts

    def describe_change(self) -> str:
        if self.action == "scale":
            return f"replicas {self.before.replicas} -> {self.after.replicas}"
        return _describe_template_change(
            self.before.model,
            self.before.model_version,
            self.after.model,
            self.after.model_version,
            self.before.images,
            self.after.images,
            f"revision {self.before.revision} -> revision {self.after.revision}",
            versions_named=_named_version(self.before.model_version_source)
            and _named_version(self.after.model_version_source),
        )


# ---------------------------------------------------------------------------------------------
# Pure helpers


def _named_version(source: str | None) -> bool:
    """Whether a model version was read from the model's metadata, not guessed from an image
    tag (then the image change says it better)."""
    return bool(source) and not str(source).startswith("image tag")


def _describe_template_change(
    model_a: str | None,
    version_a: str | None,
    model_b: str | None,
    version_b: str | None,
    images_a: Mapping[str, str],
    images_b: Mapping[str, str],
    fallback: str,
    *,
    versions_named: bool = False,
) -> str:
    if (model_a or model_b) and (version_a or version_b) and (model_a, version_a) != (model_b, version_b):
        if model_a == model_b or not model_b or not model_a:
            return f"{model_a or model_b} {version_a or '?'} -> {version_b or '?'}"
        return f"{model_a} {version_a or '?'} -> {model_b} {version_b or '?'}"
    if not (model_a or model_b) and version_a and version_b and version_a != version_b and versions_named:
        # A version read from the model's own metadata (an annotation, an argument) says more
        # than the image tags, even when the model has no name.
        return f"model version {version_a} -> {version_b}"
    changed = [
        f"{name} {images_a.get(name, '(none)')} -> {images_b.get(name, '(none)')}"
        for name in sorted(set(images_a) | set(images_b))
        if images_a.get(name) != images_b.get(name)
    ]
    if changed:
        return "image " + "; ".join(changed)
    return fallback


def _pruned(value: Any) -> Any:
    """Nil and empty compare equal in apimachinery's Semantic.DeepEqual; mirror that."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(dict(template))
    labels = (clean.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return clean


def equal_ignore_hash(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """deploymentutil.EqualIgnoreHash on JSON pod templates."""
    return bool(_pruned(_without_hash(first)) == _pruned(_without_hash(second)))


def template_digest(template: Mapping[str, Any]) -> str:
    """A digest that is equal exactly when `equal_ignore_hash` says the templates are: kept
    in plans and the audit trail instead of the template itself, which may hold secrets."""
    text = json.dumps(_pruned(_without_hash(template)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _revision_number(metadata: Mapping[str, Any]) -> int:
    value = (metadata.get("annotations") or {}).get(REVISION, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def _images(template: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(c.get("name")): str(c.get("image")) for c in (template.get("spec") or {}).get("containers") or []
    }


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def deployment_state(deployment: Mapping[str, Any]) -> DeploymentState:
    """A `DeploymentState` from a Deployment as the API server returns it (JSON)."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    template = spec.get("template") or {}
    identity = identify_model(template, meta)
    gpu_resource, gpus = pod_gpu_request(template)
    revision = _revision_number(meta)
    return DeploymentState(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        replicas=int(spec.get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        revision=revision or None,
        images=_images(template),
        model=identity.name,
        model_version=identity.version,
        model_version_source=identity.version_source,
        paused=bool(spec.get("paused", False)),
        gpu_resource=gpu_resource,
        gpus_per_pod=gpus,
        change_cause=(meta.get("annotations") or {}).get(CHANGE_CAUSE),
    )


def _revision_entry(rs: Mapping[str, Any], current_template: Mapping[str, Any]) -> Revision:
    meta = rs.get("metadata") or {}
    template = (rs.get("spec") or {}).get("template") or {}
    identity = identify_model(template)
    return Revision(
        revision=_revision_number(meta),
        replicaset=str(meta.get("name", "")),
        created_at=_parse_time(meta.get("creationTimestamp")),
        images=_images(template),
        model=identity.name,
        model_version=identity.version,
        change_cause=(meta.get("annotations") or {}).get(CHANGE_CAUSE),
        replicas=int((rs.get("spec") or {}).get("replicas", 0)),
        current=equal_ignore_hash(template, current_template),
        model_version_source=identity.version_source,
    )


def _template_changes(
    current: Mapping[str, Any], target: Mapping[str, Any], model_change: str | None
) -> tuple[str, ...]:
    """Human-readable differences between two pod templates (never env values: they may be secret)."""
    changes: list[str] = []
    if model_change:
        changes.append(model_change if model_change.startswith("model version ") else f"model {model_change}")

    def by_name(template: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        return {str(c.get("name")): c for c in (template.get("spec") or {}).get("containers") or []}

    old, new = by_name(current), by_name(target)
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None:
            changes.append(f"container {name} added")
            continue
        if b is None:
            changes.append(f"container {name} removed")
            continue
        if a.get("image") != b.get("image"):
            changes.append(f"container {name}: image {a.get('image')} -> {b.get('image')}")
        if (a.get("command"), a.get("args")) != (b.get("command"), b.get("args")):
            changes.append(f"container {name}: command/arguments changed")
        env_a = {e.get("name"): e for e in a.get("env") or []}
        env_b = {e.get("name"): e for e in b.get("env") or []}
        env_changed = sorted(str(k) for k in set(env_a) | set(env_b) if env_a.get(k) != env_b.get(k))
        if env_changed:
            changes.append(f"container {name}: environment {', '.join(env_changed)} changed")
        if _pruned(a.get("resources")) != _pruned(b.get("resources")):
            changes.append(f"container {name}: resources changed")
    annotations_a = (current.get("metadata") or {}).get("annotations") or {}
    annotations_b = (target.get("metadata") or {}).get("annotations") or {}
    keys = sorted(
        k for k in set(annotations_a) | set(annotations_b) if annotations_a.get(k) != annotations_b.get(k)
    )
    if keys:
        changes.append(f"pod annotations changed: {', '.join(keys)}")
    labels_a = _without_hash(current).get("metadata", {}).get("labels") or {}
    labels_b = _without_hash(target).get("metadata", {}).get("labels") or {}
    label_keys = sorted(k for k in set(labels_a) | set(labels_b) if labels_a.get(k) != labels_b.get(k))
    if label_keys:
        changes.append(f"pod labels changed: {', '.join(label_keys)}")
    return tuple(changes)


def _selector_string(selector: Mapping[str, Any]) -> str:
    """metav1.LabelSelectorAsSelector(...).String()."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(sorted(expression.get("values") or []))
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _now_rfc3339(clock: Callable[[], datetime]) -> str:
    return clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deployment_path(namespace: str, name: str, subresource: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    return f"{path}/{subresource}" if subresource else path


# ---------------------------------------------------------------------------------------------
# Error translation


@dataclass(frozen=True)
class _Op:
    """One API call, for error messages: what the bot tried, on what, needing which permission."""

    action: str  # "read", "list the ReplicaSets of", "roll back", ...
    subject: str  # "deployment llm-prod/vllm-llama"
    rule: RbacRule
    namespace: str | None


_FORBIDDEN = re.compile(
    r'cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]+)")?'
)


def _status_of(exc: ApiException) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {"message": body.strip()[:300]}
        if isinstance(parsed, dict):
            return parsed
    return {}


def _retry_after(exc: ApiException, status: Mapping[str, Any]) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        value = (status.get("details") or {}).get("retryAfterSeconds")
    return retry_after_seconds(value)


def _translate(exc: ApiException, op: _Op) -> Exception:
    code = int(exc.status or 0)
    status = _status_of(exc)
    message = str(status.get("message") or exc.reason or "").strip()
    reason = str(status.get("reason") or exc.reason or "")
    if code == 404:
        return NotFound(f"{op.subject} not found")
    if code == 409:
        return Conflict(
            f"{op.subject} was changed by someone else while the bot tried to {op.action} it; "
            f"look at it again and retry ({message})"
        )
    if code == 403:
        match = _FORBIDDEN.search(message)
        verb = match.group("verb") if match else op.rule.verb
        resource = match.group("resource") if match else op.rule.resource
        group = match.group("group") if match else op.rule.api_group
        namespace = (match.group("namespace") if match else None) or op.namespace
        where = f'in namespace "{namespace}"' if namespace else "at cluster scope"
        return KubernetesForbidden(
            f'Kubernetes RBAC does not let the bot {verb} "{resource}" (API group "{group}") {where}, '
            f"so it cannot {op.action} {op.subject}: grant that verb to the bot's ServiceAccount "
            f"(API server: {message})",
            verb=verb,
            api_group=group,
            resource=resource,
            namespace=namespace,
        )
    if code == 401:
        return PermanentUpstreamError(
            f"the Kubernetes API rejected the bot's credentials (401 {reason}) when it tried to "
            f"{op.action} {op.subject}: check the ServiceAccount token or kubeconfig"
        )
    if code == 0 or is_retryable_status(code):
        return RetryableUpstreamError(
            f"the Kubernetes API failed to {op.action} {op.subject} "
            f"({code or 'no answer'} {reason}): {message}",
            retry_after=_retry_after(exc, status),
        )
    return PermanentUpstreamError(
        f"the Kubernetes API refused to {op.action} {op.subject} ({code} {reason}): {message}"
    )


# ---------------------------------------------------------------------------------------------
# The adapter


KUBERNETES_MISSING = "Kubernetes is not configured: set KUBECONFIG or run in-cluster"


class WorkloadsApi(Protocol):
    """What the flows need from Kubernetes: the `Workloads` adapter, or `NoKubernetes` when
    the bot has no cluster configured (`available` tells them apart without an API call)."""

    available: bool

    def describe(self, namespace: str, name: str) -> DeploymentState: ...

    def history(self, namespace: str, name: str) -> list[Revision]: ...

    def plan_rollback(self, namespace: str, name: str, to_revision: int | None = None) -> RollbackPlan: ...

    @overload
    def rollback(self, plan: RollbackPlan, /, *, dry_run: bool = False) -> ActionResult: ...

    @overload
    def rollback(
        self, namespace: str, name: str, to_revision: int | None = None, /, *, dry_run: bool = False
    ) -> ActionResult: ...

    def plan_scale(self, namespace: str, name: str, replicas: int) -> ScalePlan: ...

    def scale(self, namespace: str, name: str, replicas: int, *, dry_run: bool = False) -> ActionResult: ...

    def restart(self, namespace: str, name: str, *, dry_run: bool = False) -> ActionResult: ...

    def close(self) -> None: ...


class NoKubernetes:
    """The Kubernetes adapter of a bot without a cluster: every call says so (ConfigError)."""

    available = False

    def _missing(self) -> NoReturn:
        raise ConfigError(KUBERNETES_MISSING)

    def describe(self, namespace: str, name: str) -> DeploymentState:
        self._missing()

    def history(self, namespace: str, name: str) -> list[Revision]:
        self._missing()

    def plan_rollback(self, namespace: str, name: str, to_revision: int | None = None) -> RollbackPlan:
        self._missing()

    @overload
    def rollback(self, plan: RollbackPlan, /, *, dry_run: bool = False) -> ActionResult: ...

    @overload
    def rollback(
        self, namespace: str, name: str, to_revision: int | None = None, /, *, dry_run: bool = False
    ) -> ActionResult: ...

    def rollback(self, *args: Any, **kwargs: Any) -> ActionResult:
        self._missing()

    def plan_scale(self, namespace: str, name: str, replicas: int) -> ScalePlan:
        self._missing()

    def scale(self, namespace: str, name: str, replicas: int, *, dry_run: bool = False) -> ActionResult:
        self._missing()

    def restart(self, namespace: str, name: str, *, dry_run: bool = False) -> ActionResult:
        self._missing()

    def close(self) -> None:
        return None


class Workloads:
    """Deployments as responders see them: describe, history, roll back, scale, restart."""

    available = True

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        timeout: float = 15.0,
        conflict_retries: int = 2,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        import kubernetes.client

        self._api_client = api_client
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._timeout = timeout
        self._conflict_retries = conflict_retries
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_environment(
        cls, kubeconfig: str | None = None, *, in_cluster: bool = False, context: str | None = None
    ) -> Workloads:
        """In-cluster config when running in a pod (`in_cluster`, which Settings tells from
        KUBERNETES_SERVICE_HOST), else the kubeconfig (argument, else `~/.kube/config`). Builds
        its own `Configuration`; the client's global default is untouched.
        """
        import kubernetes.client
        import kubernetes.config
        from kubernetes.config.config_exception import ConfigException

        configuration = _configuration()
        if in_cluster:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
                return cls(kubernetes.client.ApiClient(configuration))
            except ConfigException:
                logger.warning("in-cluster Kubernetes config unusable, trying a kubeconfig")
                configuration = _configuration()
        path = kubeconfig or os.path.expanduser("~/.kube/config")
        try:
            kubernetes.config.load_kube_config(
                config_file=path, context=context, client_configuration=configuration, persist_config=False
            )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"cannot load Kubernetes config: not in a cluster, and kubeconfig {path}: {exc}"
            ) from exc
        return cls(kubernetes.client.ApiClient(configuration))

    def close(self) -> None:
        self._api_client.close()

    def __enter__(self) -> Workloads:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------------------------

    def describe(self, namespace: str, name: str) -> DeploymentState:
        return deployment_state(self._read_deployment(namespace, name))

    def history(self, namespace: str, name: str) -> list[Revision]:
        """The owned ReplicaSets as revisions, oldest first (`kubectl rollout history`)."""
        deployment = self._read_deployment(namespace, name)
        current = (deployment.get("spec") or {}).get("template") or {}
        entries = [_revision_entry(rs, current) for rs in self._owned_replicasets(deployment)]
        return sorted(entries, key=lambda r: r.revision)

    # -- rollback -------------------------------------------------------------------------------

    def plan_rollback(self, namespace: str, name: str, to_revision: int | None = None) -> RollbackPlan:
        """What `kubectl rollout undo [--to-revision=N]` would do, without doing it."""
        if to_revision is not None and to_revision < 0:
            raise RevisionNotFound(
                f"unable to find specified revision {to_revision} in history", revision=to_revision
            )
        deployment = self._read_deployment(namespace, name)
        meta = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        current_template = spec.get("template") or {}
        replicasets = self._owned_replicasets(deployment)
        target_rs = self._revision_replicaset(namespace, name, replicasets, to_revision or 0)
        if spec.get("paused"):
            raise DeploymentPaused(
                "you cannot rollback a paused deployment; resume it first with "
                f"'kubectl rollout resume deployment/{name}' and try again"
            )
        target = _revision_entry(target_rs, current_template)
        target_template = (target_rs.get("spec") or {}).get("template") or {}
        if equal_ignore_hash(target_template, current_template):
            raise AlreadyMatches(
                f"skipped rollback (current template already matches revision {target.revision})",
                revision=target.revision,
            )
        template = _without_hash(target_template)
        current_annotations = meta.get("annotations") or {}
        annotations = {k: v for k, v in current_annotations.items() if k in ANNOTATIONS_TO_SKIP}
        annotations.update(
            {
                k: v
                for k, v in ((target_rs.get("metadata") or {}).get("annotations") or {}).items()
                if k not in ANNOTATIONS_TO_SKIP
            }
        )
        operations = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion", "")},
            {"op": "replace", "path": "/spec/template", "value": template},
            {
                "op": "replace" if "annotations" in meta else "add",
                "path": "/metadata/annotations",
                "value": annotations,
            },
        ]
        current = deployment_state(deployment)
        model_change = _describe_template_change(
            current.model,
            current.model_version,
            target.model,
            target.model_version,
            {},
            {},
            "",
            versions_named=_named_version(current.model_version_source)
            and _named_version(target.model_version_source),
        )
        return RollbackPlan(
            namespace=namespace,
            name=name,
            current=current,
            target=target,
            template=template,
            current_template=copy.deepcopy(current_template),
            annotations=annotations,
            request=ApiRequest("PATCH", _deployment_path(namespace, name), JSON_PATCH, operations),
            changes=_template_changes(current_template, template, model_change or None),
        )

    @overload
    def rollback(self, plan: RollbackPlan, /, *, dry_run: bool = False) -> ActionResult: ...

    @overload
    def rollback(
        self, namespace: str, name: str, to_revision: int | None = None, /, *, dry_run: bool = False
    ) -> ActionResult: ...

    def rollback(
        self,
        plan_or_namespace: RollbackPlan | str,
        name: str | None = None,
        to_revision: int | None = None,
        /,
        *,
        dry_run: bool = False,
    ) -> ActionResult:
        """Execute a confirmed plan, or plan and execute in one go.

        A plan is re-checked against fresh reads first: if the Deployment's template or the
        target revision changed since it was made, `PlanOutdated` is raised instead of rolling
        back something the responder did not see. A 409 on the patch (a write in the
        milliseconds between read and patch) is retried after the same re-check.
        """
        if isinstance(plan_or_namespace, RollbackPlan):
            plan = plan_or_namespace
        else:
            if name is None:
                raise TypeError("rollback(namespace, name, to_revision=None) needs a name")
            plan = self.plan_rollback(plan_or_namespace, name, to_revision)
        op = _Op("roll back", f"deployment {plan.namespace}/{plan.name}", _PATCH_DEPLOYMENT, plan.namespace)
        attempts = 0
        while True:
            attempts += 1
            fresh = self.plan_rollback(plan.namespace, plan.name, plan.to_revision)
            if not equal_ignore_hash(fresh.current_template, plan.current_template):
                raise PlanOutdated(
                    f"deployment {plan.namespace}/{plan.name} changed since the rollback was planned "
                    f"(revision {plan.from_revision} -> {fresh.from_revision}, now "
                    f"{fresh.current.model_label() or ', '.join(fresh.current.images.values())}); "
                    "review the rollback again"
                )
            if not equal_ignore_hash(fresh.template, plan.template):
                raise PlanOutdated(
                    f"revision {plan.to_revision} of deployment {plan.namespace}/{plan.name} "
                    "changed since the "
                    "rollback was planned; review the rollback again"
                )
            try:
                answer = self._call(
                    op,
                    self._apps.patch_namespaced_deployment,
                    plan.name,
                    plan.namespace,
                    fresh.request.body,
                    dry_run="All" if dry_run else None,
                )
            except Conflict:
                if attempts > self._conflict_retries:
                    raise
                logger.info("kubernetes rollback conflict, retrying", extra={"attempt": attempts})
                continue
            break
        before = fresh.current
        after = self._after(before, answer, dry_run)
        change = fresh.describe_change()
        if dry_run:
            message = (
                f"dry run: would roll back {plan.namespace}/{plan.name} from revision {fresh.from_revision} "
                f"to revision {fresh.to_revision} ({change}); nothing was changed"
            )
        else:
            message = f"rolled back {plan.namespace}/{plan.name} to revision {fresh.to_revision} ({change})"
        return self._done(
            "rollback", plan.namespace, plan.name, dry_run, before, after, fresh.request, message, attempts
        )

    # -- scale ------------------------------------------------------------------------------

    def plan_scale(self, namespace: str, name: str, replicas: int) -> ScalePlan:
        """The scale, and for a scale-up of an accelerator workload, whether the extra pods fit."""
        _check_replicas(replicas)
        current = self.describe(namespace, name)
        gpu = None
        if current.gpu_resource and current.gpus_per_pod and replicas > current.replicas:
            gpu = self._gpu_check(current.gpu_resource, current.gpus_per_pod, replicas - current.replicas)
        return ScalePlan(namespace, name, current, replicas, gpu, _scale_request(namespace, name, replicas))

    def scale(self, namespace: str, name: str, replicas: int, *, dry_run: bool = False) -> ActionResult:
        """Set spec.replicas through the scale subresource (`kubectl scale`)."""
        _check_replicas(replicas)
        before = self.describe(namespace, name)
        request = _scale_request(namespace, name, replicas)
        op = _Op("scale", f"deployment {namespace}/{name}", _PATCH_SCALE, namespace)
        answer, attempts = self._with_conflict_retry(
            lambda: self._call(
                op,
                self._apps.patch_namespaced_deployment_scale,
                name,
                namespace,
                request.body,
                dry_run="All" if dry_run else None,
            )
        )
        if dry_run:
            after = replace(before, replicas=int((answer.get("spec") or {}).get("replicas", replicas)))
            message = (
                f"dry run: would scale {namespace}/{name} from {before.replicas} to {replicas} replicas; "
                "nothing was changed"
            )
        else:
            after = self.describe(namespace, name)
            message = (
                f"scaled {namespace}/{name} from {before.replicas} to {replicas} replicas"
                if before.replicas != replicas
                else f"{namespace}/{name} already had {replicas} replicas; nothing changed"
            )
        return self._done("scale", namespace, name, dry_run, before, after, request, message, attempts)

    # -- restart ----------------------------------------------------------------------------

    def restart(self, namespace: str, name: str, *, dry_run: bool = False) -> ActionResult:
        """`kubectl rollout restart`: a new restartedAt annotation makes a new rollout."""
        before = self.describe(namespace, name)
        if before.paused:
            raise DeploymentPaused("can't restart paused deployment (run rollout resume first)")
        op = _Op("restart", f"deployment {namespace}/{name}", _PATCH_DEPLOYMENT, namespace)
        requests: list[ApiRequest] = []

        def attempt() -> dict[str, Any]:
            body = {
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: _now_rfc3339(self._clock)}}}}
            }
            requests.append(
                ApiRequest("PATCH", _deployment_path(namespace, name), STRATEGIC_MERGE_PATCH, body)
            )
            return self._call(
                op,
                self._apps.patch_namespaced_deployment,
                name,
                namespace,
                body,
                dry_run="All" if dry_run else None,
            )

        answer, attempts = self._with_conflict_retry(attempt)
        after = self._after(before, answer, dry_run)
        stamp = requests[-1].body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        if dry_run:
            message = f"dry run: would restart {namespace}/{name} (restartedAt {stamp}); nothing was changed"
        else:
            message = f"restarted {namespace}/{name}: new rollout with restartedAt {stamp}"
        return self._done("restart", namespace, name, dry_run, before, after, requests[-1], message, attempts)

    # -- internals --------------------------------------------------------------------------

    def _call(self, op: _Op, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            response = method(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
            data = response.data
        except ApiException as exc:
            raise _translate(exc, op) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RetryableUpstreamError(
                f"cannot reach the Kubernetes API to {op.action} {op.subject}: {type(exc).__name__}"
            ) from exc
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise PermanentUpstreamError(
                f"the Kubernetes API answered {op.action} {op.subject} with something that is not JSON"
            ) from exc
        if not isinstance(parsed, dict):
            raise PermanentUpstreamError(
                f"the Kubernetes API answered {op.action} {op.subject} with a non-object"
            )
        return parsed

    def _with_conflict_retry(self, attempt: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], int]:
        """Retry an idempotent write (scale to N, set restartedAt) when it meets a 409."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return attempt(), attempts
            except Conflict:
                if attempts > self._conflict_retries:
                    raise
                logger.info("kubernetes write conflict, retrying", extra={"attempt": attempts})

    def _read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        op = _Op("read", f"deployment {namespace}/{name}", _GET_DEPLOYMENT, namespace)
        return self._call(op, self._apps.read_namespaced_deployment, name, namespace)

    def _list(self, op: _Op, method: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._call(op, method, *args, limit=_PAGE_SIZE, _continue=token, **kwargs)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return items

    def _owned_replicasets(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        meta = deployment.get("metadata") or {}
        namespace, uid = str(meta.get("namespace", "")), meta.get("uid")
        selector = _selector_string((deployment.get("spec") or {}).get("selector") or {})
        op = _Op(
            "list the ReplicaSets of",
            f"deployment {namespace}/{meta.get('name')}",
            _LIST_REPLICASETS,
            namespace,
        )
        replicasets = self._list(
            op, self._apps.list_namespaced_replica_set, namespace, label_selector=selector
        )
        return [
            rs
            for rs in replicasets
            if any(
                ref.get("controller") and ref.get("uid") == uid
                for ref in (rs.get("metadata") or {}).get("ownerReferences") or []
            )
        ]

    @staticmethod
    def _revision_replicaset(
        namespace: str, name: str, replicasets: Sequence[Mapping[str, Any]], to_revision: int
    ) -> Mapping[str, Any]:
        """kubectl's deploymentRevision: the previous revision for 0, else the exact one."""
        numbered = sorted(
            ((_revision_number(rs.get("metadata") or {}), rs) for rs in replicasets), key=lambda p: p[0]
        )
        if to_revision > 0:
            for number, rs in numbered:
                if number == to_revision:
                    return rs
            available = [n for n, _ in numbered]
            raise RevisionNotFound(
                f"unable to find specified revision {to_revision} in history "
                f"(deployment {namespace}/{name} has revisions {', '.join(map(str, available)) or 'none'})",
                revision=to_revision,
                available=available,
            )
        if len(numbered) < 2:
            raise RolloutHistoryMissing(f'no rollout history found for deployment "{name}"')
        return numbered[-2][1]

    def _after(self, before: DeploymentState, answer: Mapping[str, Any], dry_run: bool) -> DeploymentState:
        """State after a template change: read back, or for a dry run, the answer plus a prediction."""
        if not dry_run:
            return self.describe(before.namespace, before.name)
        # A dry run stores nothing and the controller never sees it. Predict the revision the
        # controller would give the new template: the next after the newest, which is the
        # Deployment's own revision (no extra read, so a dry run needs no extra permission).
        return replace(deployment_state(answer), revision=(before.revision or 0) + 1)

    def _gpu_check(self, resource: str, per_pod: int, extra: int) -> GpuCheck:
        needed = extra * per_pod
        try:
            nodes = self._list(_Op("list", "nodes", _LIST_NODES, None), self._core.list_node)
            pods = self._list(
                _Op("list", "pods in all namespaces", _LIST_PODS, None),
                self._core.list_pod_for_all_namespaces,
                field_selector=LIVE_PODS,
            )
        except KubernetesForbidden as exc:
            return GpuCheck(
                resource=resource,
                gpus_per_pod=per_pod,
                extra_pods=extra,
                gpus_needed=needed,
                allocatable=0,
                requested=0,
                free=0,
                pods_that_fit=0,
                pending_pods=0,
                fits=None,
                note=f"needs {needed} {resource}; free capacity unknown: {exc.message}",
            )
        free_by_node: dict[str, int] = {}
        for node in nodes:
            meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            allocatable = count((status.get("allocatable") or {}).get(resource, 0))
            if ready and not spec.get("unschedulable") and allocatable > 0:
                free_by_node[str(meta.get("name"))] = allocatable
        allocatable_total = sum(free_by_node.values())
        requested = 0
        pending = 0
        for pod in pods:
            spec = pod.get("spec") or {}
            amount = pod_resource_request(spec, resource)
            if amount <= 0:
                continue
            node_name = spec.get("nodeName")
            if node_name in free_by_node:
                free_by_node[node_name] -= amount
                requested += amount
            elif not node_name:
                pending += 1
        free = sum(max(0, f) for f in free_by_node.values())
        pods_that_fit = sum(max(0, f) // per_pod for f in free_by_node.values())
        fits = extra <= pods_that_fit
        note = (
            f"{extra} more pod(s) x {per_pod} {resource} = {needed} needed; {free} free of "
            f"{allocatable_total} allocatable on schedulable nodes, room for {pods_that_fit} pod(s)"
        )
        if pending:
            note += f"; {pending} pod(s) already Pending for {resource}"
        note += ": fits" if fits else ": does NOT fit"
        return GpuCheck(
            resource=resource,
            gpus_per_pod=per_pod,
            extra_pods=extra,
            gpus_needed=needed,
            allocatable=allocatable_total,
            requested=requested,
            free=free,
            pods_that_fit=pods_that_fit,
            pending_pods=pending,
            fits=fits,
            note=note,
        )

    @staticmethod
    def _done(
        action: str,
        namespace: str,
        name: str,
        dry_run: bool,
        before: DeploymentState,
        after: DeploymentState,
        request: ApiRequest,
        message: str,
        attempts: int,
    ) -> ActionResult:
        logger.info(
            "kubernetes action done",
            extra={"action": action, "namespace": namespace, "deployment": name, "dry_run": dry_run},
        )
        return ActionResult(action, namespace, name, dry_run, before, after, request, message, attempts)


def _configuration() -> kubernetes.client.Configuration:
    """A fresh client Configuration whose transport never waits out a Retry-After itself.

    urllib3's default Retry quietly sleeps for a 429/503's Retry-After on GETs, however long
    and regardless of the request timeout. The bot decides about retries itself (from
    `RetryableUpstreamError.retry_after`), so only quick connection-level retries are left.
    """
    import kubernetes.client
    import urllib3

    configuration = kubernetes.client.Configuration()
    configuration.retries = urllib3.util.Retry(total=3, status=0, respect_retry_after_header=False)
    return configuration


def _check_replicas(replicas: int) -> None:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise PayloadError(f"replicas must be a whole number >= 0, got {replicas!r}")


def _scale_request(namespace: str, name: str, replicas: int) -> ApiRequest:
    return ApiRequest(
        "PATCH",
        _deployment_path(namespace, name, "scale"),
        STRATEGIC_MERGE_PATCH,
        {"spec": {"replicas": replicas}},
    )
