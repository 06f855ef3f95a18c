"""The demo's model fleet: deployments in the Kubernetes stand-in, metrics from the exporter,
and the fault switches a person flips in the console.

Faults map onto the exporter's scenarios (real vLLM, Triton, DCGM and `ml_*` metric names, see
METRICS.md), so the shipped alert rules fire on them. "bad rollout" is the one that couples
both stand-ins: it rolls `vllm-llama` out to a broken model version in Kubernetes, and the
llama latency fault stays on for exactly as long as that version is what the Deployment runs.
Rolling back (through the bot, for real) therefore makes the metrics recover.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.actions.model_info import identify_model
from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.kube_api import REVISION, KubeStandIn

__all__ = ["FAULTS", "Fault", "Fleet", "seed_cluster"]

BAD_VERSION = "v15"
GOOD_VERSION = "v14"
LLAMA = ("llm-prod", "vllm-llama")
SEEDED = (
    LLAMA,
    ("llm-prod", "vllm-qwen"),
    ("llm-prod", "vllm-mistral"),
    ("vision-prod", "triton-vision"),
    ("ts-prod", "torchserve-bert"),
    ("kserve-prod", "fraud-detector-predictor-00005-deployment"),
)


@dataclass(frozen=True)
class Fault:
    key: str
    title: str
    description: str
    scenario: str  # the exporter scenario it switches on
    alerts: tuple[str, ...]  # the shipped rules that fire on it


FAULTS: dict[str, Fault] = {
    f.key: f
    for f in (
        Fault(
            "latency",
            "latency spike",
            "vLLM Llama in llm-prod: p99 end-to-end, first-token and inter-token latency far above SLO",
            "vllm_latency",
            ("VLLMHighE2ELatency", "VLLMHighTimeToFirstToken", "VLLMHighInterTokenLatency"),
        ),
        Fault(
            "errors",
            "error burst",
            "vLLM Qwen in llm-prod aborts a quarter of its requests and answers HTTP 5xx",
            "vllm_errors",
            ("VLLMRequestErrorsHigh", "VLLMHTTP5xxRatioHigh"),
        ),
        Fault(
            "triton",
            "Triton queue",
            "Triton resnet50 in vision-prod: requests queue, average latency climbs",
            "triton_latency",
            ("TritonAvgRequestLatencyHigh", "TritonQueueDominatesLatency", "TritonPendingRequestsGrowing"),
        ),
        Fault(
            "gpu_memory",
            "GPU memory",
            "DCGM: TorchServe's GPU framebuffer on gpu-node-b is 98% full",
            "gpu_memory",
            ("GPUFramebufferMemoryHigh",),
        ),
        Fault(
            "drift",
            "drift",
            "fraud-detector's predictions and input features drift from the training data",
            "model_drift",
            ("ModelPredictionDriftHigh", "ModelFeatureDriftHigh", "ModelDatasetDriftSustained"),
        ),
        Fault(
            "bad_rollout",
            "bad rollout",
            f"roll vllm-llama out to model {BAD_VERSION}, a broken fine-tune: slow until rolled back",
            "vllm_latency",
            ("VLLMHighE2ELatency", "VLLMHighTimeToFirstToken", "VLLMHighInterTokenLatency"),
        ),
    )
}


def seed_cluster(kube: KubeStandIn) -> None:
    """The deployments behind the exporter's series, with rollout history to roll back to."""
    now = datetime.now(UTC)
    kube.add_deployment(
        *LLAMA,
        image="vllm/vllm-openai:v0.6.3",
        replicas=2,
        model="meta-llama/Llama-3.1-8B-Instruct",
        model_version="v14",
        change_cause="model v14: new fine-tune",
        created_at=now - timedelta(days=2),
        history=[
            {"model_version": "v12", "created_at": now - timedelta(days=12)},
            {"model_version": "v13", "created_at": now - timedelta(days=5)},
        ],
    )
    kube.add_deployment(
        "llm-prod",
        "vllm-qwen",
        image="vllm/vllm-openai:v0.6.3",
        replicas=1,
        model="Qwen/Qwen2.5-7B-Instruct",
        model_version="v3",
        change_cause="model v3",
        history=[{"model_version": "v2"}],
    )
    kube.add_deployment(
        "llm-prod",
        "vllm-mistral",
        image="vllm/vllm-openai:v0.6.3",
        replicas=1,
        model="mistralai/Mistral-7B-Instruct-v0.3",
        model_version="v0.3",
    )
    kube.add_deployment(
        "vision-prod",
        "triton-vision",
        image="nvcr.io/nvidia/tritonserver:24.05-py3",
        replicas=1,
        flavor="plain",
        model_version="2024.05",
        env={"MODEL_NAME": "resnet50"},
        history=[{"model_version": "2024.04"}],
    )
    kube.add_deployment(
        "ts-prod",
        "torchserve-bert",
        image="pytorch/torchserve:0.11.0-gpu",
        replicas=2,
        flavor="plain",
        model_version="1.0",
        env={"MODEL_NAME": "bert_seq_cls"},
    )
    kube.add_deployment(
        "kserve-prod",
        "fraud-detector-predictor-00005-deployment",
        image="kserve/sklearnserver:v0.13.0",
        replicas=1,
        flavor="plain",
        model_version="v5",
        env={"MODEL_NAME": "fraud-detector"},
        history=[{"model_version": "v4"}],
    )


class Fleet:
    """The fault switches: what is on, and the exporter scenarios that follow from it."""

    def __init__(self, exporter: ModelServingExporter, kube: KubeStandIn) -> None:
        self.exporter = exporter
        self.kube = kube
        self._lock = threading.Lock()
        self._on: set[str] = set()
        self._applied: frozenset[str] = frozenset()

    def set_fault(self, key: str, on: bool) -> None:
        if key not in FAULTS:
            raise KeyError(f"unknown fault {key!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            version = self.llama_version()
            if key == "bad_rollout" and on and version != BAD_VERSION:
                self.kube.rollout(
                    *LLAMA, model_version=BAD_VERSION, change_cause=f"model {BAD_VERSION}: new fine-tune"
                )
            elif key == "bad_rollout" and not on and version == BAD_VERSION:
                # Switched off by hand (not through the bot): someone ships the good model again.
                self.kube.rollout(
                    *LLAMA, model_version=GOOD_VERSION, change_cause=f"model {GOOD_VERSION} again"
                )
            if on:
                self._on.add(key)
            else:
                self._on.discard(key)
        self.sync()

    def llama_version(self) -> str | None:
        dep = self.kube.deployment(*LLAMA)
        return identify_model(dep["spec"]["template"], dep["metadata"]).version

    def active(self) -> dict[str, bool]:
        """Each fault and whether it is affecting the metrics right now."""
        with self._lock:
            on = set(self._on)
        bad = self.llama_version() == BAD_VERSION
        return {key: (bad if key == "bad_rollout" else key in on) for key in FAULTS}

    def sync(self) -> None:
        """Make the exporter's scenarios match the switches and the cluster (called often)."""
        active = self.active()
        scenarios = frozenset(FAULTS[k].scenario for k, on in active.items() if on)
        with self._lock:
            if scenarios == self._applied:
                return
            self._applied = scenarios
            if not active["bad_rollout"]:
                self._on.discard("bad_rollout")
        self.exporter.set_scenario(",".join(sorted(scenarios)) or "healthy")

    def deployments(self) -> list[dict[str, Any]]:
        """What the console shows of each Deployment: replicas, revision, model version."""
        out = []
        for namespace, name in _seeded(self.kube):
            dep = self.kube.deployment(namespace, name)
            model = identify_model(dep["spec"]["template"], dep["metadata"])
            status = dep.get("status") or {}
            out.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "replicas": dep["spec"].get("replicas", 0),
                    "ready": status.get("readyReplicas", 0),
                    "revision": (dep["metadata"].get("annotations") or {}).get(REVISION, ""),
                    "model": model.name or "",
                    "version": model.version or "",
                    "history": _history(self.kube, namespace, name),
                }
            )
        return out


def _seeded(kube: KubeStandIn) -> list[tuple[str, str]]:
    return [d for d in SEEDED if _exists(kube, *d)]


def _exists(kube: KubeStandIn, namespace: str, name: str) -> bool:
    try:
        kube.deployment(namespace, name)
    except KeyError:
        return False
    return True


def _history(kube: KubeStandIn, namespace: str, name: str) -> list[dict[str, str]]:
    out = []
    for rs in kube.replicasets(namespace):
        owners = rs["metadata"].get("ownerReferences") or []
        if not any(o.get("name") == name for o in owners):
            continue
        model = identify_model(rs["spec"]["template"], None)
        annotations = rs["metadata"].get("annotations") or {}
        out.append(
            {
                "revision": annotations.get(REVISION, ""),
                "version": model.version or "",
                "replicas": str(rs["spec"].get("replicas", 0)),
            }
        )
    out.sort(key=lambda r: int(r["revision"] or 0), reverse=True)
    return out
