"""Which model, and which version of it, a pod template serves.

Responders think in models ("llama-3-8b went from v14 to v13"), Kubernetes in pod templates.
This reads the model name and version out of a Deployment's pod template, from the places the
common serving stacks put them, first match wins:

Model name
1. label/annotation `serving.kserve.io/inferenceservice` (KServe: the InferenceService name,
   on every predictor pod; kserve/kserve pkg/constants/constants.go)
2. label/annotation `model` (vLLM production-stack chart, vllm-project/production-stack
   helm/templates/deployment-vllm-multi.yaml)
3. serving container arguments: `--served-model-name` (vLLM), `--model_name` (KServe model
   servers), `--model-name`, `--model`, `--model_id`, or the positional model of `vllm serve`
4. environment variable `MODEL_NAME`

Model version
1. label/annotation `serving.kserve.io/model-version`, `model-version`, `model.version`
   (team conventions: KServe itself defines no version key, people put one on the
   InferenceService and KServe copies it to the pods), then `app.kubernetes.io/version`
   (Kubernetes recommended label)
2. container arguments `--revision` (vLLM: Hugging Face revision), `--model-revision`,
   `--model-version`, `--model_version`
3. environment variables `MODEL_VERSION`, `MODEL_REVISION`
4. the storage URI, when its last path segment looks like a version (`s3://m/llama/v14`,
   `gs://m/llama/14`) or it pins a revision (`hf://org/model@abc123`): KServe's
   `internal.serving.kserve.io/storage-initializer-sourceuri` annotation or `STORAGE_URI`
5. the image tag of the serving container (models baked into images), unless the image is a
   generic serving runtime (vllm/vllm-openai, tritonserver, kserve/..., ...) whose tag is the
   runtime's version

Pod-template keys win over Deployment keys, labels over annotations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GPU_RESOURCES",
    "ModelIdentity",
    "count",
    "identify_model",
    "image_tag",
    "pod_gpu_request",
    "pod_resource_request",
    "serving_container",
]

# Accelerator resource names KServe treats as GPUs (constants.go DefaultGPUResourceTypeList).
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "intel.com/gpu", "habana.ai/gaudi")

NAME_KEYS = ("serving.kserve.io/inferenceservice", "model")
NAME_ARGS = ("--served-model-name", "--model_name", "--model-name", "--model", "--model_id", "--model-id")
NAME_ENV = ("MODEL_NAME",)
VERSION_KEYS = (
    "serving.kserve.io/model-version",
    "model-version",
    "model.version",
    "app.kubernetes.io/version",
)
VERSION_ARGS = ("--revision", "--model-revision", "--model-version", "--model_version")
VERSION_ENV = ("MODEL_VERSION", "MODEL_REVISION")
STORAGE_URI_KEYS = ("internal.serving.kserve.io/storage-initializer-sourceuri",)
# Generic serving runtimes: their tag is the runtime's version, not the model's.
RUNTIME_IMAGES = (
    "vllm/vllm-openai",
    "lmcache/vllm-openai",
    "nvcr.io/nvidia/tritonserver",
    "kserve/",
    "pytorch/torchserve",
    "ghcr.io/huggingface/text-generation-inference",
    "tensorflow/serving",
    "seldonio/mlserver",
)
SIDECARS = frozenset({"istio-proxy", "queue-proxy", "linkerd-proxy", "agent"})

_VERSION_SEGMENT = re.compile(r"^(v?\d+(?:[._-]\d+)*|\d{4}-\d{2}-\d{2}(?:[T_-][\w.:-]+)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelIdentity:
    """The model a template serves; `*_source` says where each value was read, for the UI."""

    name: str | None
    version: str | None
    name_source: str | None = None
    version_source: str | None = None

    def label(self) -> str | None:
        """'llama-3-8b v14', 'llama-3-8b', 'v14' or None."""
        text = " ".join(p for p in (self.name, self.version) if p)
        return text or None


def serving_container(template: Mapping[str, Any]) -> dict[str, Any] | None:
    """The container that serves the model: the first asking for a GPU, else the first non-sidecar."""
    containers: Sequence[dict[str, Any]] = (template.get("spec") or {}).get("containers") or []
    for container in containers:
        if any(_container_request(container, r) for r in GPU_RESOURCES):
            return container
    for container in containers:
        if container.get("name") not in SIDECARS:
            return container
    return containers[0] if containers else None


def image_tag(image: str) -> str | None:
    """The tag of an image reference (`repo:5000/ns/name:tag@sha256:...` -> `tag`)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    if digest:
        return digest[:19]  # "sha256:" + 12 hex digits
    return None


def count(value: Any) -> int:
    """A whole-number quantity such as an accelerator count ("8", 8, "8.0"); 0 if unreadable."""
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return 0


def _container_request(container: Mapping[str, Any], resource: str) -> int:
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    # Extended resources may be given as limits only; the API server then defaults requests to them.
    return count(requests.get(resource, limits.get(resource, 0)))


def pod_resource_request(pod_spec: Mapping[str, Any], resource: str) -> int:
    """A pod's effective request of one resource: max(sum over containers, any init container)."""
    total = sum(_container_request(c, resource) for c in pod_spec.get("containers") or [])
    init = max((_container_request(c, resource) for c in pod_spec.get("initContainers") or []), default=0)
    return max(total, init)


def pod_gpu_request(template: Mapping[str, Any]) -> tuple[str | None, int]:
    """(accelerator resource name, count per pod) of a pod template; (None, 0) without one."""
    spec = template.get("spec") or {}
    for resource in GPU_RESOURCES:
        amount = pod_resource_request(spec, resource)
        if amount:
            return resource, amount
    return None, 0


def _from_metadata(
    keys: Sequence[str], sources: Sequence[tuple[str, Mapping[str, Any]]]
) -> tuple[str, str] | None:
    for key in keys:
        for where, metadata in sources:
            for kind in ("labels", "annotations"):
                value = (metadata.get(kind) or {}).get(key)
                if value:
                    return str(value), f'{where} {kind[:-1]} "{key}"'
    return None


def _argv(container: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in (container.get("command") or [])] + [
        str(a) for a in (container.get("args") or [])
    ]


def _from_args(keys: Sequence[str], argv: Sequence[str]) -> tuple[str, str] | None:
    for key in keys:
        for index, arg in enumerate(argv):
            if arg == key and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
                return argv[index + 1], f"argument {key}"
            if arg.startswith(f"{key}="):
                return arg.split("=", 1)[1], f"argument {key}"
    return None


def _vllm_positional(argv: Sequence[str]) -> tuple[str, str] | None:
    for index, arg in enumerate(argv[:-1]):
        if arg != "serve" or (index > 0 and argv[index - 1].rsplit("/", 1)[-1] != "vllm"):
            continue
        candidate = argv[index + 1]
        if not candidate.startswith("-"):
            return candidate, "argument of vllm serve"
    return None


def _is_runtime_image(image: str) -> bool:
    name = image.partition("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    name = name.removeprefix("docker.io/").removeprefix("index.docker.io/")
    return any(name.startswith(prefix) for prefix in RUNTIME_IMAGES)


def _from_env(keys: Sequence[str], container: Mapping[str, Any]) -> tuple[str, str] | None:
    env = {e.get("name"): e.get("value") for e in container.get("env") or [] if isinstance(e, dict)}
    for key in keys:
        if env.get(key):
            return str(env[key]), f"environment {key}"
    return None


def _version_from_uri(uri: str) -> str | None:
    if "@" in uri.rsplit("/", 1)[-1]:
        return uri.rsplit("@", 1)[1] or None
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    return segment if _VERSION_SEGMENT.match(segment) else None


def identify_model(
    template: Mapping[str, Any], deployment_metadata: Mapping[str, Any] | None = None
) -> ModelIdentity:
    """Read the model name and version from a pod template (and its Deployment's metadata)."""
    sources: list[tuple[str, Mapping[str, Any]]] = [("pod", template.get("metadata") or {})]
    if deployment_metadata:
        sources.append(("deployment", deployment_metadata))
    container = serving_container(template) or {}
    argv = _argv(container)

    name = (
        _from_metadata(NAME_KEYS, sources)
        or _from_args(NAME_ARGS, argv)
        or _vllm_positional(argv)
        or _from_env(NAME_ENV, container)
    )
    version = (
        _from_metadata(VERSION_KEYS, sources)
        or _from_args(VERSION_ARGS, argv)
        or _from_env(VERSION_ENV, container)
    )
    if version is None:
        uri = _from_metadata(STORAGE_URI_KEYS, sources) or _from_env(("STORAGE_URI",), container)
        if uri is not None:
            parsed = _version_from_uri(uri[0])
            if parsed:
                version = (parsed, f"storage URI {uri[0]}")
    if version is None and container.get("image") and not _is_runtime_image(str(container["image"])):
        tag = image_tag(str(container["image"]))
        if tag:
            version = (tag, f"image tag of container {container.get('name')}")
    return ModelIdentity(
        name=name[0] if name else None,
        version=version[0] if version else None,
        name_source=name[1] if name else None,
        version_source=version[1] if version else None,
    )
