"""A local stand-in for the parts of the Kubernetes API server the bot uses.

No cluster can run where the bot is tested or demoed, so tests drive the official `kubernetes`
client against this server instead. It speaks the real wire protocol for the endpoints the bot
calls: JSON objects in the shapes the API server returns, `Status` objects worded as the API
server words them, the three PATCH content types, optimistic concurrency on resourceVersion,
`dryRun=All`, the `scale` subresource, label and field selectors and list chunking.

A simulated deployment controller runs synchronously after every write, with the real
controller's revision rules (pkg/controller/deployment/sync.go and util/deployment_util.go):
a changed pod template reuses an owned ReplicaSet whose template is equal ignoring
`pod-template-hash` (that ReplicaSet gets the next revision and its old number goes to
`deployment.kubernetes.io/revision-history`) or creates `<deployment>-<hash>`; the new
ReplicaSet is scaled to `spec.replicas` at once and the old ones to 0; pods are created and
scheduled onto nodes by their extended-resource requests (GPUs), so a capacity check has real
numbers to read. Like the real controller, it writes after the user's write: the PATCH answer
is the object as written, a later GET shows the controller's revision and status.

Model metadata, as the charts people run set it (see `add_deployment`, flavors):
- "vllm": the vLLM production-stack chart (vllm-project/production-stack
  helm/templates/deployment-vllm-multi.yaml): labels `model` and `helm-release-name` on the
  Deployment, its selector and pods; container `vllm` running `vllm serve <model> ...`. The
  model version is passed with vLLM's `--revision` through the chart's `extraArgs`.
- "kserve": a KServe RawDeployment predictor (kserve/kserve pkg/constants/constants.go):
  Deployment `<isvc>-predictor`, pod labels `app: isvc.<isvc>-predictor`, `component:
  predictor`, `serving.kserve.io/inferenceservice: <isvc>`; pod annotations
  `serving.kserve.io/deploymentMode: RawDeployment` and
  `internal.serving.kserve.io/storage-initializer-sourceuri: <storageUri>`; container
  `kserve-container` with `--model_name`; a `storage-initializer` init container. KServe has no
  model-version key of its own: the version lives in the storage URI.
- "plain": the Kubernetes recommended labels `app.kubernetes.io/name` and
  `app.kubernetes.io/version`, and `MODEL_NAME`/`MODEL_VERSION` environment variables, as
  hand-written Triton or TorchServe manifests often carry.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
import re
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from bot.sandbox.kube_patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from bot.sandbox.serving import serve_in_background, shut_down

__all__ = ["KubeStandIn", "RecordedRequest"]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
POD_TEMPLATE_HASH = "pod-template-hash"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# Annotations the controller does not copy from a Deployment to its ReplicaSets
# (deployment_util.go annotationsToSkip).
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
GPU = "nvidia.com/gpu"
KSERVE_SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
FLAVORS = ("vllm", "kserve", "plain")

_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_PATCH = "application/strategic-merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphanums


# --------------------------------------------------------------------------------------------
# Small helpers


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fnv1a32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def pod_template_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    """Like controller.ComputeHash: FNV-32a of the template, digits mapped to safe letters."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in str(_fnv1a32(data)))


def _pruned(value: Any) -> Any:
    """Drop empty maps/lists and nulls: Semantic.DeepEqual treats nil and empty as equal."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def equal_ignore_hash(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """deploymentutil.EqualIgnoreHash on JSON pod templates."""
    a = copy.deepcopy(dict(first))
    b = copy.deepcopy(dict(second))
    for template in (a, b):
        (template.get("metadata") or {}).get("labels", {}).pop(POD_TEMPLATE_HASH, None)
    return bool(_pruned(a) == _pruned(b))


def _revision_of(obj: Mapping[str, Any]) -> int:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def _controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in obj.get("metadata", {}).get("ownerReferences") or []
    )


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET_REQUIREMENT = re.compile(r"^([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_KEY = re.compile(r"^[A-Za-z0-9./_-]+$")


def parse_label_selector(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """labels.Parse: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`."""
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for part in _split_top_level(text):
        match = _SET_REQUIREMENT.match(part)
        if match:
            values = frozenset(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append((match.group(1), match.group(2), values))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, value = (s.strip() for s in part.split(op, 1))
                if not _KEY.match(key):
                    raise ValueError(f"unable to parse requirement: invalid label key {key!r}")
                requirements.append((key, "!=" if op == "!=" else "=", frozenset({value})))
                break
        else:
            if part.startswith("!") and _KEY.match(part[1:].strip()):
                requirements.append((part[1:].strip(), "!", frozenset()))
            elif _KEY.match(part):
                requirements.append((part, "exists", frozenset()))
            else:
                raise ValueError(f"unable to parse requirement: {part!r}")
    return requirements


def label_selector_matches(
    labels: Mapping[str, str], requirements: Sequence[tuple[str, str, frozenset[str]]]
) -> bool:
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        if op == "=" and (not present or value not in values):
            return False
        if op == "!=" and present and value in values:
            return False
        if op == "in" and (not present or value not in values):
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def selector_string(selector: Mapping[str, Any]) -> str:
    """metav1.LabelSelectorAsSelector(...).String() for matchLabels and matchExpressions."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, op = expression["key"], expression["operator"]
        values = ",".join(sorted(expression.get("values") or []))
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(
                op, f"!{key}"
            )
        )
    return ",".join(parts)


_FIELDS = {
    "pods": {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"},
    "nodes": {"metadata.name", "spec.unschedulable"},
    "deployments": {"metadata.name", "metadata.namespace"},
    "replicasets": {"metadata.name", "metadata.namespace", "status.replicas"},
}


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return "false" if path == "spec.unschedulable" else ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(resource: str, text: str) -> list[tuple[str, bool, str]]:
    requirements = []
    for part in _split_top_level(text):
        negate = "!=" in part
        key, value = (
            part.split("!=" if negate else ("==" if "==" in part else "="), 1)
            if ("=" in part)
            else (part, "")
        )
        key = key.strip()
        if key not in _FIELDS.get(resource, set()):
            raise ValueError(f"field label not supported: {key}")
        requirements.append((key, negate, value.strip()))
    return requirements


# --------------------------------------------------------------------------------------------
# Errors, shaped like the API server's


class ApiError(Exception):
    """An answer other than success: becomes a `Status` object on the wire."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = dict(self.details)
        body["code"] = self.code
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource},
    )


def conflict(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, group: str, name: str, field_path: str, detail: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {field_path}: {detail}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field_path}],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, {})


def patch_not_applied() -> ApiError:
    """What the API server answers for any JSON patch it cannot apply (it hides the reason)."""
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {})


# --------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class Target:
    """What a request path addresses, in the authorizer's terms (RBAC verb/group/resource)."""

    resource: str
    group: str
    namespace: str | None
    name: str | None
    subresource: str | None = None

    def verb(self, method: str) -> str:
        if method == "GET":
            return "get" if self.name else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^/api/v1/nodes(?:/(?P<name>[^/]+))?$"), "nodes", ""),
    (re.compile(r"^/api/v1/pods$"), "pods", ""),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$"), "pods", ""),
    (re.compile(r"^/apis/apps/v1/deployments$"), "deployments", "apps"),
    (
        re.compile(
            r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments(?:/(?P<name>[^/]+)(?:/(?P<sub>scale))?)?$"
        ),
        "deployments",
        "apps",
    ),
    (re.compile(r"^/apis/apps/v1/replicasets$"), "replicasets", "apps"),
    (
        re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/replicasets(?:/(?P<name>[^/]+))?$"),
        "replicasets",
        "apps",
    ),
]

_ALLOWED_METHODS: dict[tuple[str, str], frozenset[str]] = {
    ("deployments", "collection"): frozenset({"GET", "POST"}),
    ("deployments", "item"): frozenset({"GET", "PUT", "PATCH", "DELETE"}),
    ("deployments", "scale"): frozenset({"GET", "PUT", "PATCH"}),
    ("replicasets", "collection"): frozenset({"GET"}),
    ("replicasets", "item"): frozenset({"GET"}),
    ("pods", "collection"): frozenset({"GET"}),
    ("pods", "item"): frozenset({"GET"}),
    ("nodes", "collection"): frozenset({"GET"}),
    ("nodes", "item"): frozenset({"GET"}),
}


def route(path: str) -> Target | None:
    for pattern, resource, group in _ROUTES:
        match = pattern.match(path)
        if match:
            groups = match.groupdict()
            return Target(resource, group, groups.get("ns"), groups.get("name"), groups.get("sub"))
    return None


# --------------------------------------------------------------------------------------------
# Recording and failure injection


@dataclass
class RecordedRequest:
    """One request as the stand-in saw it (the Authorization header is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    authorized: bool
    target: Target | None
    status: int = 0

    @property
    def rbac(self) -> tuple[str, str, str] | None:
        """(verb, apiGroup, resource) as the RBAC authorizer sees this request."""
        if self.target is None:
            return None
        return (self.target.verb(self.method), self.target.group, self.target.rbac_resource)


@dataclass(frozen=True)
class _Outage:
    status: int | None  # None: drop connections unanswered


@dataclass
class _Failure:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    message: str | None
    retry_after: int | None


# --------------------------------------------------------------------------------------------
# Object builders for seeding


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    image = str(container.get("image", ""))
    last = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in last or last.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def default_pod_template(template: dict[str, Any]) -> dict[str, Any]:
    """The API server's defaulting of a PodTemplateSpec (the fields that show up in GETs)."""
    spec = template.setdefault("spec", {})
    template.setdefault("metadata", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            _default_container(container)
    return template


def _resources(gpus: int) -> dict[str, Any]:
    if gpus <= 0:
        return {"requests": {"cpu": "1", "memory": "2Gi"}}
    return {
        "requests": {"cpu": "4", "memory": "32Gi"},
        "limits": {"memory": "32Gi", GPU: str(gpus)},
    }


@dataclass
class _Variant:
    image: str
    model_version: str | None
    env: dict[str, str]
    pod_annotations: dict[str, str]
    change_cause: str | None
    created_at: datetime


class _TemplateBuilder:
    """Builds pod templates the way the chart of a flavor renders them."""

    def __init__(
        self,
        flavor: str,
        name: str,
        *,
        model: str | None,
        gpus: int,
        labels: Mapping[str, str],
        pod_annotations: Mapping[str, str],
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
        self.flavor = flavor
        self.name = name
        self.model = model
        self.gpus = gpus
        self.labels = dict(labels)
        self.pod_annotations = dict(pod_annotations)
        self.isvc = name.removesuffix("-predictor")

    def selector(self) -> dict[str, str]:
        if self.flavor == "vllm":
            return {"model": self.model or self.name, "helm-release-name": "vllm"}
        if self.flavor == "kserve":
            return {"app": f"isvc.{self.isvc}-predictor"}
        return {"app.kubernetes.io/name": self.name}

    def deployment_labels(self) -> dict[str, str]:
        labels = {**self.selector(), **self.labels}
        if self.flavor == "kserve":
            labels.update({"component": "predictor", "serving.kserve.io/inferenceservice": self.isvc})
        return labels

    def template(self, variant: _Variant) -> dict[str, Any]:
        labels = {**self.selector(), **self.labels}
        annotations = {**self.pod_annotations, **variant.pod_annotations}
        env = [{"name": k, "value": v} for k, v in variant.env.items()]
        container: dict[str, Any] = {"image": variant.image, "resources": _resources(self.gpus)}
        init: list[dict[str, Any]] = []
        if self.flavor == "vllm":
            model = self.model or self.name
            args = ["serve", model, "--host", "0.0.0.0", "--port", "8000", "--served-model-name", model]
            if variant.model_version:
                args += ["--revision", variant.model_version]
            container.update(
                name="vllm",
                command=["vllm"],
                args=args,
                env=[{"name": "HF_HOME", "value": "/data"}, *env],
                ports=[{"name": "container-port", "containerPort": 8000}],
            )
        elif self.flavor == "kserve":
            labels.update({"component": "predictor", "serving.kserve.io/inferenceservice": self.isvc})
            annotations.setdefault("serving.kserve.io/deploymentMode", "RawDeployment")
            uri = f"s3://models/{self.model or self.isvc}/{variant.model_version or 'latest'}"
            annotations.setdefault(KSERVE_SOURCE_URI, uri)
            container.update(
                name="kserve-container",
                args=[
                    f"--model_name={self.model or self.isvc}",
                    "--model_dir=/mnt/models",
                    "--http_port=8080",
                ],
                env=env,
                ports=[{"name": "http1", "containerPort": 8080}],
                volumeMounts=[
                    {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
                ],
            )
            init.append(
                {
                    "name": "storage-initializer",
                    "image": "kserve/storage-initializer:v0.14.1",
                    "args": [annotations[KSERVE_SOURCE_URI], "/mnt/models"],
                    "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
                    "volumeMounts": [{"name": "kserve-provision-location", "mountPath": "/mnt/models"}],
                }
            )
        else:
            if variant.model_version:
                labels["app.kubernetes.io/version"] = variant.model_version
            model_env = []
            if self.model:
                model_env.append({"name": "MODEL_NAME", "value": self.model})
            if variant.model_version:
                model_env.append({"name": "MODEL_VERSION", "value": variant.model_version})
            container.update(name=self.name, env=[*model_env, *env])
        spec: dict[str, Any] = {"containers": [container]}
        if init:
            spec["initContainers"] = init
            spec["volumes"] = [{"name": "kserve-provision-location", "emptyDir": {}}]
        metadata: dict[str, Any] = {"labels": labels}
        if annotations:
            metadata["annotations"] = annotations
        return default_pod_template({"metadata": metadata, "spec": spec})


# --------------------------------------------------------------------------------------------
# The cluster state and the simulated controller


def _container_requests(container: Mapping[str, Any]) -> dict[str, int]:
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    out: dict[str, int] = {}
    for key, value in merged.items():
        if "/" in key:  # extended resources are whole numbers
            out[key] = int(str(value))
    return out


def pod_extended_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """Effective extended-resource request of a pod: max(sum of containers, any init container)."""
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for key, value in _container_requests(container).items():
            total[key] = total.get(key, 0) + value
    for container in spec.get("initContainers") or []:
        for key, value in _container_requests(container).items():
            total[key] = max(total.get(key, 0), value)
    return total


class _Cluster:
    """Objects keyed by (resource, namespace, name), one lock, one resourceVersion counter."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.RLock()
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            "deployments": {},
            "replicasets": {},
            "pods": {},
            "nodes": {},
        }
        self.resource_version = 1000
        self.ready_caps: dict[tuple[str, str], int] = {}
        self.clock_override: datetime | None = None
        self.random = random.Random(seed)

    # -- basics --------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock_override or datetime.now(UTC)

    def store(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        self.objects[resource][key] = obj
        return obj

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects[resource].get((namespace, name))

    def items(self, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        found = [
            obj for (ns, _), obj in self.objects[resource].items() if namespace is None or ns == namespace
        ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def new_metadata(self, namespace: str | None, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "uid": str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            "creationTimestamp": _rfc3339(self.now()),
        }
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    def random_suffix(self, length: int = 5) -> str:
        return "".join(self.random.choice(_SAFE_ALPHABET) for _ in range(length))

    # -- deployments: validation and writes --------------------------------------------------

    def _validate_deployment(self, dep: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = dep["metadata"]["name"]
        spec = dep.get("spec")
        if not isinstance(spec, dict):
            raise invalid("Deployment", "apps", name, "spec", "Required value")
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(
                "Deployment",
                "apps",
                name,
                "spec.replicas",
                f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
            )
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            raise invalid("Deployment", "apps", name, "spec.selector", "Required value")
        if old is not None and _pruned(selector) != _pruned(old["spec"].get("selector")):
            raise invalid(
                "Deployment",
                "apps",
                name,
                "spec.selector",
                f"Invalid value: {json.dumps(selector)}: field is immutable",
            )
        template = spec.get("template")
        if not isinstance(template, dict) or not (template.get("spec") or {}).get("containers"):
            raise invalid("Deployment", "apps", name, "spec.template.spec.containers", "Required value")
        labels = (template.get("metadata") or {}).get("labels") or {}
        try:
            requirements = parse_label_selector(selector_string(selector))
        except ValueError as exc:
            raise invalid("Deployment", "apps", name, "spec.selector", str(exc)) from exc
        if not label_selector_matches(labels, requirements):
            raise invalid(
                "Deployment",
                "apps",
                name,
                "spec.template.metadata.labels",
                f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
            )
        for container in template["spec"]["containers"]:
            if not container.get("image"):
                raise invalid(
                    "Deployment", "apps", name, "spec.template.spec.containers[0].image", "Required value"
                )

    @staticmethod
    def _default_deployment(dep: dict[str, Any]) -> None:
        spec = dep["spec"]
        spec.setdefault("replicas", 1)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        )
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        if spec.get("paused") is False:
            del spec["paused"]
        default_pod_template(spec["template"])

    def create_deployment(self, namespace: str, body: Any, *, dry_run: bool) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise bad_request("the body of the request is not a Deployment")
        name = body["metadata"].get("name")
        if not name:
            raise invalid(
                "Deployment", "apps", "", "metadata.name", "Required value: name or generateName is required"
            )
        if body["metadata"].get("namespace", namespace) != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if self.get("deployments", namespace, name) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'deployments.apps "{name}" already exists',
                {"name": name, "group": "apps", "kind": "deployments"},
            )
        dep = copy.deepcopy(body)
        dep["apiVersion"], dep["kind"] = "apps/v1", "Deployment"
        meta = self.new_metadata(namespace, name)
        for key in ("labels", "annotations"):
            if body["metadata"].get(key):
                meta[key] = dict(body["metadata"][key])
        meta["generation"] = 1
        dep["metadata"] = meta
        dep.pop("status", None)
        self._validate_deployment(dep, None)
        self._default_deployment(dep)
        dep["status"] = {}
        if dry_run:
            return dep
        self.store("deployments", dep)
        written = copy.deepcopy(dep)
        self.sync(namespace, name)
        return written

    def update_deployment(self, namespace: str, name: str, new: Any, *, dry_run: bool) -> dict[str, Any]:
        """The registry's Update: preconditions, strategy, validation; then the controller."""
        old = self.get("deployments", namespace, name)
        if old is None:
            raise not_found("deployments", "apps", name)
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise bad_request("the body of the request is not a Deployment")
        if new["metadata"].get("name", name) != name:
            raise bad_request(
                f"the name of the object ({new['metadata'].get('name')}) "
                f"does not match the name on the URL ({name})"
            )
        wanted_rv = new["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise conflict("deployments", "apps", name)
        dep = copy.deepcopy(new)
        dep["apiVersion"], dep["kind"] = "apps/v1", "Deployment"
        meta = dep["metadata"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            meta[key] = old["metadata"].get(key)
        for key in ("labels", "annotations"):
            if not meta.get(key):
                meta.pop(key, None)
        dep["status"] = copy.deepcopy(old.get("status", {}))
        self._validate_deployment(dep, old)
        self._default_deployment(dep)
        # Spec and annotation changes bump the generation (registry/apps/deployment/strategy.go).
        if _pruned(dep["spec"]) != _pruned(old["spec"]) or (meta.get("annotations") or {}) != (
            old["metadata"].get("annotations") or {}
        ):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        if dry_run:
            return dep
        self.store("deployments", dep)
        written = copy.deepcopy(dep)
        self.sync(namespace, name)
        return written

    def delete_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        dep = self.get("deployments", namespace, name)
        if dep is None:
            raise not_found("deployments", "apps", name)
        uid = dep["metadata"]["uid"]
        del self.objects["deployments"][(namespace, name)]
        for rs in [r for r in self.items("replicasets", namespace) if _controlled_by(r, uid)]:
            self._delete_rs(rs)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": "apps", "kind": "deployments", "uid": uid},
        }

    # -- scale subresource -----------------------------------------------------------------

    def scale_of(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        meta = dep["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": dep["spec"].get("replicas", 1)},
            "status": {
                "replicas": dep.get("status", {}).get("replicas", 0),
                "selector": selector_string(dep["spec"]["selector"]),
            },
        }

    def update_scale(self, namespace: str, name: str, scale: Any, *, dry_run: bool) -> dict[str, Any]:
        dep = self.get("deployments", namespace, name)
        if dep is None:
            raise not_found("deployments", "apps", name)
        if not isinstance(scale, dict) or not isinstance(scale.get("spec"), dict):
            raise bad_request("the body of the request is not a Scale")
        replicas = scale["spec"].get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(
                "Scale",
                "autoscaling",
                name,
                "spec.replicas",
                f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
            )
        updated = copy.deepcopy(dep)
        updated["spec"]["replicas"] = replicas
        updated["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get("resourceVersion") or ""
        written = self.update_deployment(namespace, name, updated, dry_run=dry_run)
        return self.scale_of(written)

    # -- the deployment controller ---------------------------------------------------------

    def owned_replicasets(self, dep: Mapping[str, Any]) -> list[dict[str, Any]]:
        uid = dep["metadata"]["uid"]
        owned = [
            rs for rs in self.items("replicasets", dep["metadata"]["namespace"]) if _controlled_by(rs, uid)
        ]
        return sorted(owned, key=lambda rs: (rs["metadata"]["creationTimestamp"], rs["metadata"]["name"]))

    def _new_replicaset(self, dep: dict[str, Any], revision: int) -> dict[str, Any]:
        namespace, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        template = copy.deepcopy(dep["spec"]["template"])
        collisions = 0
        while True:
            digest = pod_template_hash(template, collisions)
            if self.get("replicasets", namespace, f"{name}-{digest}") is None:
                break
            collisions += 1
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = digest
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = digest
        annotations = {
            k: v
            for k, v in (dep["metadata"].get("annotations") or {}).items()
            if k not in ANNOTATIONS_TO_SKIP
        }
        replicas = dep["spec"].get("replicas", 1)
        annotations.update(
            {
                REVISION: str(revision),
                DESIRED_REPLICAS: str(replicas),
                MAX_REPLICAS: str(replicas + _max_surge(dep)),
            }
        )
        meta = self.new_metadata(namespace, f"{name}-{digest}")
        meta.update(
            {
                "generation": 1,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": name,
                        "uid": dep["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        )
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": meta,
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        return self.store("replicasets", rs)

    @staticmethod
    def _set_new_rs_annotations(dep: Mapping[str, Any], rs: dict[str, Any], new_revision: int) -> bool:
        annotations = rs["metadata"].setdefault("annotations", {})
        changed = False
        for key, value in (dep["metadata"].get("annotations") or {}).items():
            if key not in ANNOTATIONS_TO_SKIP and annotations.get(key) != value:
                annotations[key] = value
                changed = True
        old = annotations.get(REVISION)
        if int(old or 0) < new_revision:
            annotations[REVISION] = str(new_revision)
            changed = True
            if old is not None:  # rolling back to this ReplicaSet: keep its old numbers
                history = annotations.get(REVISION_HISTORY)
                annotations[REVISION_HISTORY] = f"{history},{old}" if history else old
        return changed

    def sync(self, namespace: str, name: str) -> None:
        """One pass of the deployment controller, converging at once."""
        dep = self.get("deployments", namespace, name)
        if dep is None:
            return
        owned = self.owned_replicasets(dep)
        new_rs = next(
            (rs for rs in owned if equal_ignore_hash(rs["spec"]["template"], dep["spec"]["template"])), None
        )
        old = [rs for rs in owned if rs is not new_rs]
        new_revision = max((_revision_of(rs) for rs in old), default=0) + 1
        paused = bool(dep["spec"].get("paused"))
        replicas = dep["spec"].get("replicas", 1)
        if new_rs is None and not paused:
            new_rs = self._new_replicaset(dep, new_revision)
            owned.append(new_rs)
        elif new_rs is not None and self._set_new_rs_annotations(dep, new_rs, new_revision):
            self.store("replicasets", new_rs)
        active = new_rs or max(owned, key=lambda rs: rs["spec"].get("replicas", 0), default=None)
        for rs in owned:
            want = replicas if rs is active else 0
            if rs["spec"].get("replicas", 0) != want:
                rs["spec"]["replicas"] = want
                rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
                if rs is new_rs and want:
                    rs["metadata"]["annotations"][DESIRED_REPLICAS] = str(replicas)
                    rs["metadata"]["annotations"][MAX_REPLICAS] = str(replicas + _max_surge(dep))
                self.store("replicasets", rs)
        self._cleanup(dep, [rs for rs in owned if rs is not new_rs])
        owned = self.owned_replicasets(dep)
        cap = self.ready_caps.get((namespace, name))
        ready_budget = [cap if cap is not None else 1 << 30]
        # Old pods go first so the new ones can take their GPUs (the rollout converges at once).
        for rs in sorted(owned, key=lambda r: r is new_rs):
            self._scale_pods(rs)
        self.schedule_pending()
        for rs in sorted(owned, key=lambda r: r is not new_rs):
            self._refresh_rs_status(rs, ready_budget)
        self._update_status(dep, owned, new_rs, paused)

    def _cleanup(self, dep: Mapping[str, Any], old: list[dict[str, Any]]) -> None:
        limit = dep["spec"].get("revisionHistoryLimit", 10)
        cleanable = sorted(
            (rs for rs in old if rs["spec"].get("replicas", 0) == 0 and not self._pods_of(rs)),
            key=_revision_of,
        )
        for rs in cleanable[: max(0, len(old) - limit)]:
            self._delete_rs(rs)

    def _delete_rs(self, rs: Mapping[str, Any]) -> None:
        for pod in self._pods_of(rs):
            del self.objects["pods"][(pod["metadata"]["namespace"], pod["metadata"]["name"])]
        del self.objects["replicasets"][(rs["metadata"]["namespace"], rs["metadata"]["name"])]

    def _pods_of(self, rs: Mapping[str, Any]) -> list[dict[str, Any]]:
        uid = rs["metadata"]["uid"]
        return [p for p in self.items("pods", rs["metadata"]["namespace"]) if _controlled_by(p, uid)]

    def _scale_pods(self, rs: dict[str, Any]) -> None:
        pods = self._pods_of(rs)
        want = rs["spec"].get("replicas", 0)
        if len(pods) > want:
            doomed = sorted(
                pods,
                key=lambda p: (p["status"].get("phase") != "Pending", p["metadata"]["creationTimestamp"]),
            )
            for pod in doomed[: len(pods) - want]:
                del self.objects["pods"][(pod["metadata"]["namespace"], pod["metadata"]["name"])]
        for _ in range(want - len(pods)):
            self._create_pod(rs)

    def _refresh_rs_status(self, rs: dict[str, Any], ready_budget: list[int]) -> None:
        ready = 0
        for pod in sorted(self._pods_of(rs), key=lambda p: p["metadata"]["name"]):
            if pod["status"].get("phase") != "Running":
                continue
            is_ready = ready_budget[0] > 0
            if is_ready:
                ready_budget[0] -= 1
                ready += 1
            if _pod_ready(pod) != is_ready:
                _set_pod_running(pod, ready=is_ready, now=self.now())
                self.store("pods", pod)
        status: dict[str, Any] = {"replicas": len(self._pods_of(rs))}
        status.update(
            {
                k: v
                for k, v in {
                    "fullyLabeledReplicas": status["replicas"],
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": rs["metadata"].get("generation", 1),
                }.items()
                if v
            }
        )
        if rs.get("status") != status:
            rs["status"] = status
            self.store("replicasets", rs)

    def _create_pod(self, rs: dict[str, Any]) -> dict[str, Any]:
        template = copy.deepcopy(rs["spec"]["template"])
        name = f"{rs['metadata']['name']}-{self.random_suffix()}"
        meta = self.new_metadata(rs["metadata"]["namespace"], name)
        meta.update(
            {
                "generateName": f"{rs['metadata']['name']}-",
                "labels": template["metadata"].get("labels", {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs["metadata"]["name"],
                        "uid": rs["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        )
        if template["metadata"].get("annotations"):
            meta["annotations"] = template["metadata"]["annotations"]
        spec = template["spec"]
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            resources = container.setdefault("resources", {})
            for key, value in (resources.get("limits") or {}).items():
                resources.setdefault("requests", {}).setdefault(key, value)  # Pod defaulting
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        return self.store("pods", pod)

    def node_free(self) -> dict[str, dict[str, int]]:
        free: dict[str, dict[str, int]] = {}
        for node in self.items("nodes", None):
            if node["spec"].get("unschedulable") or not _node_ready(node):
                continue
            free[node["metadata"]["name"]] = {
                k: int(str(v)) for k, v in node["status"].get("allocatable", {}).items() if "/" in k
            }
        for pod in self.items("pods", None):
            node_name = pod["spec"].get("nodeName")
            if node_name in free and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                for key, value in pod_extended_requests(pod["spec"]).items():
                    free[node_name][key] = free[node_name].get(key, 0) - value
        return free

    def schedule_pending(self) -> None:
        """First-fit on extended resources (GPUs); CPU and memory are assumed plentiful."""
        nodes = self.items("nodes", None)
        for pod in self.items("pods", None):
            if pod["spec"].get("nodeName") or pod["status"].get("phase") != "Pending":
                continue
            needs = pod_extended_requests(pod["spec"])
            free = self.node_free()
            choice = next(
                (n for n, res in free.items() if all(res.get(k, 0) >= v for k, v in needs.items())),
                None,
            )
            if choice is None and not needs and not nodes:
                choice = "sandbox-node"  # no nodes registered: pods without GPU needs still run
            if choice is None:
                short = ", ".join(f"{len(nodes)} Insufficient {k}" for k in sorted(needs)) or "no nodes"
                message = f"0/{len(nodes)} nodes are available: {short}."
                condition = {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": _rfc3339(self.now()),
                    "reason": "Unschedulable",
                    "message": message,
                }
                if pod["status"].get("conditions") != [condition]:
                    pod["status"] = {"phase": "Pending", "conditions": [condition], "qosClass": "Burstable"}
                    self.store("pods", pod)
                continue
            pod["spec"]["nodeName"] = choice
            _set_pod_running(pod, ready=True, now=self.now())
            self.store("pods", pod)

    def _update_status(
        self, dep: dict[str, Any], owned: list[dict[str, Any]], new_rs: dict[str, Any] | None, paused: bool
    ) -> None:
        spec_replicas = dep["spec"].get("replicas", 1)
        total = sum(rs["status"].get("replicas", 0) for rs in owned)
        available = sum(rs["status"].get("availableReplicas", 0) for rs in owned)
        ready = sum(rs["status"].get("readyReplicas", 0) for rs in owned)
        updated = new_rs["status"].get("replicas", 0) if new_rs else 0
        now = _rfc3339(self.now())
        old_conditions = {c["type"]: c for c in dep.get("status", {}).get("conditions") or []}

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            previous = old_conditions.get(kind)
            since = previous["lastTransitionTime"] if previous and previous["status"] == status else now
            return {
                "type": kind,
                "status": status,
                "lastUpdateTime": now
                if not previous or previous["reason"] != reason
                else previous["lastUpdateTime"],
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            }

        min_available = spec_replicas - _max_unavailable(dep)
        conditions = [
            condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if available >= min_available
            else condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        ]
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        if paused:
            conditions.append(condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"))
        elif updated == spec_replicas and available == spec_replicas and total == spec_replicas:
            conditions.append(
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                )
            )
        else:
            conditions.append(
                condition(
                    "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
                )
            )
        status = {
            k: v
            for k, v in {
                "observedGeneration": dep["metadata"].get("generation", 1),
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": available,
                "unavailableReplicas": max(0, spec_replicas - available),
            }.items()
            if v
        }
        status["conditions"] = conditions
        annotations = dep["metadata"].setdefault("annotations", {})
        changed = False
        if new_rs is not None and annotations.get(REVISION) != str(_revision_of(new_rs)):
            annotations[REVISION] = str(_revision_of(new_rs))  # written with the status, as UpdateStatus does
            changed = True
        if _pruned(dep.get("status")) != _pruned(status):
            dep["status"] = status
            changed = True
        if changed:
            self.store("deployments", dep)


def _percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        exact = int(text[:-1]) * total
        return -(-exact // 100) if round_up else exact // 100
    return int(text)


def _max_surge(dep: Mapping[str, Any]) -> int:
    strategy = dep["spec"].get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    return _percent(rolling.get("maxSurge", "25%"), dep["spec"].get("replicas", 1), round_up=True)


def _max_unavailable(dep: Mapping[str, Any]) -> int:
    strategy = dep["spec"].get("strategy") or {}
    replicas = dep["spec"].get("replicas", 1)
    if strategy.get("type") != "RollingUpdate" or replicas == 0:
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    unavailable = _percent(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if unavailable == 0 and _max_surge(dep) == 0:
        unavailable = 1
    return min(unavailable, replicas)


def _node_ready(node: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions") or []
    )


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def _set_pod_running(pod: dict[str, Any], *, ready: bool, now: datetime) -> None:
    stamp = _rfc3339(now)
    flag = "True" if ready else "False"
    statuses = []
    for container in pod["spec"].get("containers") or []:
        state: dict[str, Any]
        if ready:
            state = {"running": {"startedAt": stamp}}
        else:
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 5m0s restarting failed container={container['name']} "
                    f"pod={pod['metadata']['name']}",
                }
            }
        statuses.append(
            {
                "name": container["name"],
                "image": container.get("image"),
                "imageID": "",
                "ready": ready,
                "started": ready,
                "restartCount": 0 if ready else 7,
                "state": state,
            }
        )
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": flag, "lastProbeTime": None, "lastTransitionTime": stamp},
            {"type": "Ready", "status": flag, "lastProbeTime": None, "lastTransitionTime": stamp},
        ],
        "hostIP": "10.0.0.10",
        "podIP": "10.244.0.10",
        "startTime": stamp,
        "containerStatuses": statuses,
        "qosClass": "Burstable",
    }


# --------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; without TCP_NODELAY every keep-alive request
    # waits out the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `KubeStandIn.requests` instead of access logs."""

    def _handle(self) -> None:
        self.server.stand_in._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], stand_in: KubeStandIn) -> None:
        self.stand_in = stand_in
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            sockets = list(self.connections)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class KubeStandIn:
    """A threaded local HTTP server playing the Kubernetes API for the bot's tests and demo.

    Use as a context manager (or `start()`/`stop()`), point the official client at it with
    `write_kubeconfig()`, seed objects with `add_deployment()`/`add_node()`/`add_pod()`, look at
    `requests` / `requests_to()`, and make it misbehave with `fail_next()` and `outage()`.
    """

    def __init__(
        self,
        *,
        token: str = "sandbox",  # noqa: S107 - the stand-in's well-known test token, not a secret
        user: str = "system:serviceaccount:incident-bot:incident-bot",
        seed: int = 7,
    ) -> None:
        self._token = token
        self._user = user
        self._cluster = _Cluster(seed)
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._outage: _Outage | None = None
        self._builders: dict[tuple[str, str], _TemplateBuilder] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> KubeStandIn:
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = serve_in_background(self._server, name="kube-stand-in")
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        shut_down(self._server, self._thread)
        self._server = None
        self._thread = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Kubernetes stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        token: str = "sandbox",  # noqa: S107 - the stand-in's well-known test token
        namespace: str = "default",
    ) -> Path:
        """A kubeconfig the official client loads (`kubernetes.config.new_client_from_config`)."""
        target = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "incident-bot", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "incident-bot", "namespace": namespace},
                }
            ],
            "current-context": "sandbox",
            "preferences": {},
        }
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # -- seeding -----------------------------------------------------------------------------

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        image: str,
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        gpus_per_pod: int = 0,
        model: str | None = None,
        model_version: str | None = None,
        env: Mapping[str, str] | None = None,
        change_cause: str | None = None,
        created_at: datetime | None = None,
        history: Sequence[Mapping[str, Any]] = (),
        flavor: str = "vllm",
        paused: bool = False,
    ) -> dict[str, Any]:
        """Create a Deployment whose revision history is `history` followed by the current state.

        Each `history` entry is a variant of the pod template with any of the keys `image`,
        `model_version`, `env`, `pod_annotations`, `change_cause`, `created_at`; it is rolled
        out in order, so revisions 1..len(history) come from it and the current state is
        revision len(history)+1, with ReplicaSets stamped with each variant's `created_at`
        (default: one day apart, the current one an hour ago).
        """
        now = datetime.now(UTC)
        current_at = created_at or now - timedelta(hours=1)
        variants: list[_Variant] = []
        for index, entry in enumerate(history):
            unknown = set(entry) - {
                "image",
                "model_version",
                "env",
                "pod_annotations",
                "change_cause",
                "created_at",
            }
            if unknown:
                raise ValueError(f"unknown keys in history entry {index}: {', '.join(sorted(unknown))}")
            variants.append(
                _Variant(
                    image=str(entry.get("image", image)),
                    model_version=entry.get("model_version"),
                    env=dict(entry.get("env") or {}),
                    pod_annotations=dict(entry.get("pod_annotations") or {}),
                    change_cause=entry.get("change_cause"),
                    created_at=entry.get("created_at") or current_at - timedelta(days=len(history) - index),
                )
            )
        variants.append(_Variant(image, model_version, dict(env or {}), {}, change_cause, current_at))
        builder = _TemplateBuilder(
            flavor,
            name,
            model=model,
            gpus=gpus_per_pod,
            labels=labels or {},
            pod_annotations=pod_annotations or {},
        )
        with self._cluster.lock:
            first = variants[0]
            meta_annotations = dict(annotations or {})
            if first.change_cause:
                meta_annotations[CHANGE_CAUSE] = first.change_cause
            body = {
                "metadata": {
                    "name": name,
                    "labels": builder.deployment_labels(),
                    "annotations": meta_annotations,
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": builder.selector()},
                    "template": builder.template(first),
                },
            }
            with self._clock(first.created_at):
                self._cluster.create_deployment(namespace, body, dry_run=False)
            for variant in variants[1:]:
                self._apply_variant(
                    namespace, name, builder.template(variant), variant.change_cause, variant.created_at
                )
            if paused:
                self.set_paused(namespace, name, True)
            self._builders[(namespace, name)] = builder
            return self.deployment(namespace, name)

    def rollout(
        self,
        namespace: str,
        name: str,
        *,
        image: str | None = None,
        model_version: str | None = None,
        env: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        change_cause: str | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Someone else deploys a new pod template (as `kubectl set image` or a CD system would)."""
        with self._cluster.lock:
            builder = self._builders.get((namespace, name))
            dep = self._require("deployments", namespace, name)
            if builder is None:
                raise ValueError(f"deployment {namespace}/{name} was not seeded with add_deployment")
            container = _first_container(dep["spec"]["template"])
            variant = _Variant(
                image=image or str(container.get("image")),
                model_version=model_version if model_version is not None else _seeded_version(dep, builder),
                env=dict(env or {}),
                pod_annotations=dict(pod_annotations or {}),
                change_cause=change_cause,
                created_at=at or datetime.now(UTC),
            )
            self._apply_variant(namespace, name, builder.template(variant), change_cause, variant.created_at)
            return self.deployment(namespace, name)

    def _apply_variant(
        self, namespace: str, name: str, template: dict[str, Any], change_cause: str | None, at: datetime
    ) -> None:
        dep = copy.deepcopy(self._require("deployments", namespace, name))
        dep["spec"]["template"] = template
        annotations = dep["metadata"].setdefault("annotations", {})
        if change_cause:
            annotations[CHANGE_CAUSE] = change_cause
        else:
            annotations.pop(CHANGE_CAUSE, None)
        with self._clock(at):
            self._cluster.update_deployment(namespace, name, dep, dry_run=False)

    def set_paused(self, namespace: str, name: str, paused: bool = True) -> dict[str, Any]:
        with self._cluster.lock:
            dep = copy.deepcopy(self._require("deployments", namespace, name))
            dep["spec"]["paused"] = paused
            self._cluster.update_deployment(namespace, name, dep, dry_run=False)
            return self.deployment(namespace, name)

    def set_ready(self, namespace: str, name: str, ready: int | None) -> dict[str, Any]:
        """Cap how many pods of the Deployment are Ready (the rest crash-loop); None lifts it."""
        with self._cluster.lock:
            self._require("deployments", namespace, name)
            if ready is None:
                self._cluster.ready_caps.pop((namespace, name), None)
            else:
                self._cluster.ready_caps[(namespace, name)] = ready
            self._cluster.sync(namespace, name)
            return self.deployment(namespace, name)

    def add_node(
        self,
        name: str,
        *,
        gpus: int = 0,
        gpu_product: str = "NVIDIA-A100-SXM4-80GB",
        cpu: str = "64",
        memory: str = "512Gi",
        ready: bool = True,
        unschedulable: bool = False,
    ) -> dict[str, Any]:
        with self._cluster.lock:
            meta = self._cluster.new_metadata(None, name)
            labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
            capacity = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "1Ti"}
            if gpus:
                labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": gpu_product})
                capacity[GPU] = str(gpus)
            meta["labels"] = labels
            spec: dict[str, Any] = {"unschedulable": True} if unschedulable else {}
            stamp = _rfc3339(self._cluster.now())
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": meta,
                "spec": spec,
                "status": {
                    "capacity": capacity,
                    "allocatable": dict(capacity),
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp,
                            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                            "message": "kubelet is posting ready status"
                            if ready
                            else "Kubelet stopped posting node status.",
                        }
                    ],
                },
            }
            self._cluster.store("nodes", node)
            self._resync_all()
            return copy.deepcopy(node)

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        node: str | None = None,
        gpus: int = 0,
        phase: str = "Running",
        image: str = "nvcr.io/nvidia/pytorch:24.05-py3",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A pod not owned by any Deployment (a training job, a notebook) that holds GPUs."""
        with self._cluster.lock:
            meta = self._cluster.new_metadata(namespace, name)
            meta["labels"] = dict(labels or {})
            container: dict[str, Any] = {"name": "main", "image": image, "resources": _resources(gpus)}
            _default_container(container)
            if gpus:
                container["resources"]["requests"][GPU] = str(gpus)
            spec: dict[str, Any] = default_pod_template({"spec": {"containers": [container]}})["spec"]
            pod: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": spec,
                "status": {},
            }
            if node is not None:
                spec["nodeName"] = node
            if phase == "Running" and node is not None:
                _set_pod_running(pod, ready=True, now=self._cluster.now())
            else:
                pod["status"] = {"phase": phase}
            self._cluster.store("pods", pod)
            if phase == "Pending" and node is None:
                self._cluster.schedule_pending()
            return copy.deepcopy(self._cluster.objects["pods"][(namespace, name)])

    def _resync_all(self) -> None:
        self._cluster.schedule_pending()
        for dep in list(self._cluster.items("deployments", None)):
            self._cluster.sync(dep["metadata"]["namespace"], dep["metadata"]["name"])

    def _require(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self._cluster.get(resource, namespace, name)
        if obj is None:
            raise KeyError(f"{resource} {namespace}/{name} does not exist in the stand-in")
        return obj

    def _clock(self, at: datetime) -> _ClockOverride:
        return _ClockOverride(self._cluster, at)

    # -- inspection ---------------------------------------------------------------------------

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        with self._cluster.lock:
            return copy.deepcopy(self._require("deployments", namespace, name))

    def replicasets(self, namespace: str) -> list[dict[str, Any]]:
        """ReplicaSets of the namespace, oldest revision first."""
        with self._cluster.lock:
            return sorted(copy.deepcopy(self._cluster.items("replicasets", namespace)), key=_revision_of)

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        with self._cluster.lock:
            return copy.deepcopy(self._cluster.items("pods", namespace))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cluster.lock:
            return list(self._requests)

    def requests_to(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests with this method (any if None) whose path matches the regex `path`."""
        pattern = re.compile(path) if path else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (pattern is None or pattern.search(r.path))
        ]

    def clear_requests(self) -> None:
        with self._cluster.lock:
            self._requests.clear()

    # -- failure injection --------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        *,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` and a real-shaped Status.

        The Status is worded as the API server words that code for that request: 403 names
        the missing RBAC verb and resource, 409 is the optimistic-lock conflict, 404 names the
        object, 5xx are internal errors; `message` replaces the wording.
        """
        with self._cluster.lock:
            self._failures.append(
                _Failure(method.upper(), re.compile(path_regex), status, times, message, retry_after)
            )

    def outage(self, *, status: int | None = None) -> None:
        """Until `restore()`: drop every connection unanswered, or answer `status` if given."""
        with self._cluster.lock:
            self._outage = _Outage(status)

    def restore(self) -> None:
        with self._cluster.lock:
            self._outage = None

    # -- serving --------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type")
        body: Any = None
        body_error = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
                body_error = "invalid JSON in the request body"
        authorization = handler.headers.get("Authorization", "")
        authorized = authorization.lower().startswith("bearer ") and authorization[7:].strip() == self._token
        target = route(split.path)
        record = RecordedRequest(
            handler.command,
            split.path,
            query,
            content_type.split(";")[0].strip() if content_type else None,
            body,
            authorized,
            target,
        )
        with self._cluster.lock:
            self._requests.append(record)
            outage = self._outage
        if outage is not None and outage.status is None:
            handler.close_connection = True
            record.status = 0
            return
        answer = self._answer(handler.command, split.path, query, record, body_error, outage)
        record.status = answer.status
        payload = json.dumps(answer.body, separators=(",", ":")).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Audit-Id", str(uuid.uuid4()))
        for key, value in answer.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        record: RecordedRequest,
        body_error: str | None,
        outage: _Outage | None,
    ) -> _Answer:
        try:
            if outage is not None and outage.status is not None:
                raise self._injected(outage.status, method, record.target, None, None)
            if not record.authorized:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            with self._cluster.lock:
                failure = self._take_failure(method, path)
            if failure is not None:
                raise self._injected(
                    failure.status, method, record.target, failure.message, failure.retry_after
                )
            if path == "/version":
                return _Answer(
                    200,
                    {"major": "1", "minor": "31", "gitVersion": "v1.31.0-sandbox", "platform": "linux/amd64"},
                )
            if record.target is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            if body_error:
                raise bad_request(body_error)
            with self._cluster.lock:
                return self._dispatch(method, record.target, query, record.content_type, record.body)
        except ApiError as error:
            return _Answer(error.code, error.status(), error.headers)

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method in (method, "*") and failure.path.search(path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _injected(
        self, status: int, method: str, target: Target | None, message: str | None, retry_after: int | None
    ) -> ApiError:
        resource = target.resource if target else ""
        group = target.group if target else ""
        name = (target.name if target else None) or ""
        if status == 403 and target is not None:
            verb = target.verb(method)
            where = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
            reason = (
                f'User "{self._user}" cannot {verb} resource "{target.rbac_resource}" '
                f'in API group "{group}" {where}'
            )
            subject = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
            return ApiError(
                403,
                "Forbidden",
                message or f"{subject} is forbidden: {reason}",
                {"name": name, "group": group, "kind": resource}
                if name
                else {"group": group, "kind": resource},
            )
        if status == 404:
            error = (
                not_found(resource, group, name)
                if target and name
                else ApiError(404, "NotFound", "the server could not find the requested resource", {})
            )
        elif status == 409:
            error = conflict(resource, group, name)
        elif status == 422:
            error = patch_not_applied()
        elif status == 429:
            seconds = retry_after if retry_after is not None else 1
            return ApiError(
                429,
                "TooManyRequests",
                message or "Too many requests, please try again later.",
                {"retryAfterSeconds": seconds},
                {"Retry-After": str(seconds)},
            )
        elif status == 503:
            error = ApiError(
                503, "ServiceUnavailable", "the server is currently unable to handle the request", {}
            )
        elif status == 504:
            error = ApiError(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, "
                "but may still be processing the request",
                {},
            )
        elif status >= 500:
            cause = message or "etcdserver: request timed out"
            return ApiError(
                status, "InternalError", f"Internal error occurred: {cause}", {"causes": [{"message": cause}]}
            )
        elif status == 401:
            error = ApiError(401, "Unauthorized", "Unauthorized")
        else:
            error = ApiError(
                status, "BadRequest", "the server rejected our request for an unknown reason", {}
            )
        if message:
            error.message = message
        if retry_after is not None:
            error.headers["Retry-After"] = str(retry_after)
        return error

    def _dispatch(
        self, method: str, target: Target, query: Mapping[str, str], content_type: str | None, body: Any
    ) -> _Answer:
        shape = "scale" if target.subresource else ("item" if target.name else "collection")
        if method not in _ALLOWED_METHODS.get((target.resource, shape), frozenset()):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
            )
        dry_run = _dry_run(query)
        cluster = self._cluster
        ns, name = target.namespace, target.name
        if method == "GET" and shape == "collection":
            return _Answer(200, self._list(target, query))
        if method == "GET" and shape == "item":
            assert name is not None
            obj = cluster.get(target.resource, ns or "", name)
            if obj is None:
                raise not_found(target.resource, target.group, name)
            return _Answer(200, _with_kind(target.resource, obj))
        if ns is None:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
            )
        if method == "POST":
            return _Answer(201, cluster.create_deployment(ns, body, dry_run=dry_run))
        assert name is not None
        dep = cluster.get("deployments", ns, name)
        if dep is None:
            raise not_found("deployments", "apps", name)
        if method == "DELETE":
            return _Answer(200, cluster.delete_deployment(ns, name))
        if shape == "scale":
            current = cluster.scale_of(dep)
            if method == "GET":
                return _Answer(200, current)
            new_scale = body if method == "PUT" else _patched(current, body, content_type)
            return _Answer(200, cluster.update_scale(ns, name, new_scale, dry_run=dry_run))
        new = body if method == "PUT" else _patched(dep, body, content_type)
        return _Answer(200, cluster.update_deployment(ns, name, new, dry_run=dry_run))

    def _list(self, target: Target, query: Mapping[str, str]) -> dict[str, Any]:
        items = self._cluster.items(target.resource, target.namespace)
        try:
            if query.get("labelSelector"):
                requirements = parse_label_selector(query["labelSelector"])
                items = [
                    i
                    for i in items
                    if label_selector_matches(i["metadata"].get("labels") or {}, requirements)
                ]
            if query.get("fieldSelector"):
                fields = parse_field_selector(target.resource, query["fieldSelector"])
                items = [i for i in items if all((_field_value(i, k) == v) != neg for k, neg, v in fields)]
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        start = 0
        if query.get("continue"):
            try:
                start = int(base64.urlsafe_b64decode(query["continue"].encode()).decode())
            except ValueError as exc:
                raise bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion"
                ) from exc
        limit = int(query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        meta: dict[str, Any] = {"resourceVersion": str(self._cluster.resource_version)}
        if limit and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        kind = {
            "deployments": "DeploymentList",
            "replicasets": "ReplicaSetList",
            "pods": "PodList",
            "nodes": "NodeList",
        }
        version = "apps/v1" if target.group == "apps" else "v1"
        return {
            "kind": kind[target.resource],
            "apiVersion": version,
            "metadata": meta,
            "items": [_without_kind(i) for i in copy.deepcopy(page)],
        }


class _ClockOverride:
    def __init__(self, cluster: _Cluster, at: datetime) -> None:
        self._cluster = cluster
        self._at = at
        self._previous: datetime | None = None

    def __enter__(self) -> None:
        self._previous = self._cluster.clock_override
        self._cluster.clock_override = self._at

    def __exit__(self, *exc: object) -> None:
        self._cluster.clock_override = self._previous


def _dry_run(query: Mapping[str, str]) -> bool:
    value = query.get("dryRun")
    if value is None:
        return False
    if value != "All":
        raise bad_request(f'Invalid dryRun value: "{value}": supported values: "All"')
    return True


def _patched(current: Mapping[str, Any], body: Any, content_type: str | None) -> Any:
    try:
        if content_type == _JSON_PATCH:
            return apply_json_patch(current, body)
        if content_type == _MERGE_PATCH:
            if not isinstance(body, dict):
                raise bad_request("a merge patch must be a JSON object")
            return apply_merge_patch(current, body)
        if content_type == _STRATEGIC_PATCH:
            return apply_strategic_merge_patch(current, body)
    except PatchError as exc:
        if content_type == _JSON_PATCH:
            raise patch_not_applied() from exc
        raise bad_request(str(exc)) from exc
    accepted = ", ".join((_JSON_PATCH, _MERGE_PATCH, _STRATEGIC_PATCH))
    if content_type == _APPLY_PATCH:
        accepted_note = "server-side apply is not implemented by the stand-in"
        raise ApiError(415, "UnsupportedMediaType", f"{accepted_note}; accepted media types: {accepted}", {})
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {accepted}",
        {},
    )


def _with_kind(resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    out["apiVersion"], out["kind"] = {
        "deployments": ("apps/v1", "Deployment"),
        "replicasets": ("apps/v1", "ReplicaSet"),
        "pods": ("v1", "Pod"),
        "nodes": ("v1", "Node"),
    }[resource]
    return {"kind": out.pop("kind"), "apiVersion": out.pop("apiVersion"), **out}


def _without_kind(obj: dict[str, Any]) -> dict[str, Any]:
    obj.pop("kind", None)
    obj.pop("apiVersion", None)
    return obj


def _first_container(template: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = template.get("spec", {}).get("containers") or [{}]
    return containers[0]


def _seeded_version(dep: Mapping[str, Any], builder: _TemplateBuilder) -> str | None:
    """The model version the current template was built with, so `rollout(image=...)` keeps it."""
    template = dep["spec"]["template"]
    if builder.flavor == "vllm":
        args = _first_container(template).get("args") or []
        return str(args[args.index("--revision") + 1]) if "--revision" in args else None
    if builder.flavor == "kserve":
        uri = (template["metadata"].get("annotations") or {}).get(KSERVE_SOURCE_URI, "")
        version = uri.rsplit("/", 1)[-1]
        return None if version == "latest" else version
    labels = template["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/version")
