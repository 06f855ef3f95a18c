"""A fake model-serving fleet as one Prometheus exporter, for tests and the demo.

It serves, on one `/metrics`, every metric name the shipped runbooks and alert rules use,
with the names, label sets and exposition quirks of the real exporters (see METRICS.md):
vLLM (`model_name`, `vllm:` prefix), NVIDIA Triton (`model`/`version`, counters without
`_total`), Knative queue-proxy (`namespace_name`, `revision_name`, latencies in ms), the
KServe model server, TorchServe (`Requests5XX`, `Hostname`), the DCGM exporter (`gpu`,
`UUID`, `Hostname`, MiB framebuffer, XID as a last-code gauge), kube-state-metrics and
cAdvisor, OpenCost, and the `ml_*` model-quality convention. Scrape labels that a
ServiceMonitor would add (`namespace`, `pod`) are part of the series here, as if
`honorLabels: true`, because a static scrape config has no Kubernetes metadata.

Series move like a real fleet: counters only increase, histograms are real histograms
(buckets, `_sum`, `_count`) fed from log-normal latency distributions, so `rate()`,
`histogram_quantile()` and `deriv()` all work. Time is the wall clock between scrapes.

Scenarios inject one fault each, on one designated target, so that the matching alert rule
in `manifests/prometheus-rules.yaml` fires (`SCENARIOS[name].alerts`); "healthy" injects
nothing and "all" injects every fault at once (targets never overlap in a way that hides
another fault). Switch from Python (`set_scenario("gpu_xid")`) or over HTTP
(`POST /scenario/gpu_xid`, `GET /scenario`).

    exporter = ModelServingExporter(port=0).start()
    exporter.url            # http://127.0.0.1:PORT  (scrape target: exporter.target)
    exporter.set_scenario("vllm_latency")
    exporter.stop()
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.utils import floatToGoString

from bot.sandbox.serving import serve_in_background, shut_down

__all__ = ["SCENARIOS", "ModelServingExporter", "Scenario", "exposition"]

logger = logging.getLogger(__name__)

LabelSet = tuple[tuple[str, str], ...]

# --- the fleet ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A Deployment (or StatefulSet) and its pods; `gpus` holds one (node, index) per pod."""

    namespace: str
    deployment: str  # the owner's name, whatever its kind
    container: str
    pods: tuple[str, ...]
    gpus: tuple[tuple[str, int], ...] = ()
    model_name: str = ""
    kind: str = "Deployment"


VLLM_LLAMA = Workload(
    "llm-prod",
    "vllm-llama",
    "vllm",
    ("vllm-llama-7c9d5b6f48-2xkqp", "vllm-llama-7c9d5b6f48-8tz5w"),
    (("gpu-node-a", 0), ("gpu-node-a", 1)),
    "meta-llama/Llama-3.1-8B-Instruct",
)
VLLM_MISTRAL = Workload(
    "llm-prod",
    "vllm-mistral",
    "vllm",
    ("vllm-mistral-5f6b8d9c7d-hn4vx",),
    (("gpu-node-a", 2),),
    "mistralai/Mistral-7B-Instruct-v0.3",
)
VLLM_QWEN = Workload(
    "llm-prod",
    "vllm-qwen",
    "vllm",
    ("vllm-qwen-6d8f9b7c5b-wq9rt",),
    (("gpu-node-a", 3),),
    "Qwen/Qwen2.5-7B-Instruct",
)
VLLM_GEMMA = Workload(
    "llm-prod",
    "vllm-gemma",
    "vllm",
    ("vllm-gemma-8d7c6b5f9d-t5q2l",),
    (("gpu-node-b", 3),),
    "google/gemma-2-9b-it",
)
VLLM_STAGING = Workload(
    "llm-staging",
    "vllm-llama",
    "vllm",
    ("vllm-llama-54c7d9f6b8-k2mzn",),
    (("gpu-node-b", 2),),
    "meta-llama/Llama-3.1-8B-Instruct",
)
VLLM_WORKLOADS = (VLLM_LLAMA, VLLM_MISTRAL, VLLM_QWEN, VLLM_GEMMA, VLLM_STAGING)

TRITON = Workload(
    "vision-prod", "triton-vision", "triton", ("triton-vision-6b7d8c9f5d-p4x2z",), (("gpu-node-b", 0),)
)
TRITON_MODELS = (("resnet50", "1"), ("yolov8", "3"))

TORCHSERVE = Workload(
    "ts-prod",
    "torchserve-bert",
    "torchserve",
    ("torchserve-bert-7f5c9d8b6d-m2kx9", "torchserve-bert-7f5c9d8b6d-q8w4n"),
    (("gpu-node-b", 1), ("gpu-node-c", 0)),
)
TORCHSERVE_MODELS = (("bert_seq_cls", "1.0"), ("densenet161", "1.0"))


@dataclass(frozen=True)
class KnativeRevision:
    namespace: str
    service: str  # the Knative Service (= "<isvc>-predictor" for KServe)
    revision: str
    pod: str
    model_name: str

    @property
    def deployment(self) -> str:
        return f"{self.revision}-deployment"


KN_IRIS = KnativeRevision(
    "kserve-prod",
    "sklearn-iris-predictor",
    "sklearn-iris-predictor-00002",
    "sklearn-iris-predictor-00002-deployment-7d9c6b5f8d-x7k2p",
    "sklearn-iris",
)
KN_FRAUD = KnativeRevision(
    "kserve-prod",
    "fraud-detector-predictor",
    "fraud-detector-predictor-00005",
    "fraud-detector-predictor-00005-deployment-6c8d9f7b5c-l9m3n",
    "fraud-detector",
)
KNATIVE_REVISIONS = (KN_IRIS, KN_FRAUD)
# A KServe InferenceService in RawDeployment mode: a plain Deployment "<isvc>-predictor".
KSERVE_CHURN = Workload(
    "kserve-prod",
    "churn-model-predictor",
    "kserve-container",
    ("churn-model-predictor-5c8d7f9b6d-r8v4m",),
    (),
    "churn-model",
)

# A StatefulSet: its pod name yields no `deployment` label, so runbooks offer no workload buttons.
LLAMA_70B = Workload(
    "llm-prod",
    "llama-70b",
    "vllm",
    ("llama-70b-0",),
    (("gpu-node-c", 1),),
    "meta-llama/Llama-3.1-70B-Instruct",
    kind="StatefulSet",
)

ALL_WORKLOADS: tuple[Workload, ...] = (
    *VLLM_WORKLOADS,
    LLAMA_70B,
    TRITON,
    TORCHSERVE,
    KSERVE_CHURN,
    *(
        Workload(r.namespace, r.deployment, "kserve-container", (r.pod,), (), r.model_name)
        for r in KNATIVE_REVISIONS
    ),
)


@dataclass(frozen=True)
class GpuNode:
    name: str
    gpu_model: str
    framebuffer_mib: int
    gpus: int
    instance_type: str
    hourly_cost: float  # USD per GPU-hour (OpenCost node_gpu_hourly_cost)


GPU_NODES = (
    GpuNode("gpu-node-a", "NVIDIA A100-SXM4-80GB", 81920, 4, "p4d.24xlarge", 4.10),
    GpuNode("gpu-node-b", "NVIDIA A10G", 23028, 4, "g5.12xlarge", 1.21),
    GpuNode("gpu-node-c", "NVIDIA L4", 23034, 2, "g6.12xlarge", 0.80),
)

# Model-quality monitors (ml_* convention, METRICS.md 7.1). The monitoring job labels its
# series with the serving workload's namespace and deployment, so alerts can offer rollback.
QUALITY_MODELS = (
    (
        "kserve-prod",
        KN_FRAUD.deployment,
        "fraud-detector",
        "v5",
        ("amount", "merchant_category", "hour_of_day"),
    ),
    (
        "kserve-prod",
        KSERVE_CHURN.deployment,
        "churn-model",
        "2024-06-01",
        ("tenure", "monthly_charges", "contract"),
    ),
)


# --- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One injected fault: `alerts` are the rules that fire for it, on series with `target` labels."""

    name: str
    description: str
    alerts: tuple[str, ...]
    target: Mapping[str, str]


def _scenarios() -> dict[str, Scenario]:
    llama = {"namespace": "llm-prod", "deployment": "vllm-llama"}
    items = [
        Scenario("healthy", "no fault: no alert fires", (), {}),
        Scenario(
            "vllm_latency",
            "Llama in llm-prod is slow: p99 TTFT, inter-token and end-to-end latency far above SLO",
            ("VLLMHighE2ELatency", "VLLMHighTimeToFirstToken", "VLLMHighInterTokenLatency"),
            llama,
        ),
        Scenario("vllm_queue", "Llama's waiting queue grows steadily", ("VLLMQueueGrowing",), llama),
        Scenario(
            "vllm_kv_cache",
            "Llama's KV cache is full and requests get preempted",
            ("VLLMKVCacheSaturatedWithPreemptions",),
            llama,
        ),
        Scenario(
            "vllm_stalled",
            "Mistral's engine hangs: requests running, no tokens generated",
            ("VLLMEngineStalled", "InferenceCostPer1kAboveBudget"),
            {"namespace": "llm-prod", "deployment": "vllm-mistral"},
        ),
        Scenario(
            "vllm_errors",
            "Qwen aborts/errors a quarter of its requests and answers HTTP 5xx",
            ("VLLMRequestErrorsHigh", "VLLMHTTP5xxRatioHigh"),
            {"namespace": "llm-prod", "deployment": "vllm-qwen"},
        ),
        Scenario(
            "triton_latency",
            "Triton resnet50 requests queue: high average latency, queue dominates, pending grows",
            ("TritonAvgRequestLatencyHigh", "TritonQueueDominatesLatency", "TritonPendingRequestsGrowing"),
            {"namespace": "vision-prod", "model": "resnet50"},
        ),
        Scenario(
            "triton_failures",
            "Triton yolov8 fails 30% of requests in its backend",
            ("TritonInferenceFailureRatioHigh",),
            {"namespace": "vision-prod", "model": "yolov8"},
        ),
        Scenario(
            "kserve_latency",
            "KServe sklearn-iris revision answers in seconds (queue-proxy latency)",
            ("KServeRevisionHighLatencyP99",),
            {"namespace": "kserve-prod", "deployment": KN_IRIS.deployment},
        ),
        Scenario(
            "kserve_errors",
            "KServe fraud-detector revision answers 25% HTTP 5xx",
            ("KServeRevision5xxRatioHigh",),
            {"namespace": "kserve-prod", "deployment": KN_FRAUD.deployment},
        ),
        Scenario(
            "kserve_predict_latency",
            "KServe churn-model predict() takes seconds",
            ("KServePredictLatencyHigh",),
            {"namespace": "kserve-prod", "model_name": "churn-model"},
        ),
        Scenario(
            "torchserve_latency",
            "TorchServe bert_seq_cls: slow inference and long queueing",
            ("TorchServeAvgLatencyHigh", "TorchServeAvgQueueLatencyHigh"),
            {"namespace": "ts-prod", "model_name": "bert_seq_cls"},
        ),
        Scenario(
            "torchserve_errors",
            "TorchServe pod m2kx9 answers 20% HTTP 5xx",
            ("TorchServe5xxRatioHigh",),
            {"namespace": "ts-prod", "pod": TORCHSERVE.pods[0]},
        ),
        Scenario(
            "gpu_xid",
            "XID 79 (GPU has fallen off the bus) on gpu-node-b GPU 0, serving Triton",
            ("GPUXidCritical",),
            {"hostname": "gpu-node-b", "gpu": "0"},
        ),
        Scenario(
            "gpu_memory",
            "TorchServe's GPU framebuffer is 98% full",
            ("GPUFramebufferMemoryHigh",),
            {"hostname": "gpu-node-b", "gpu": "1"},
        ),
        Scenario(
            "gpu_saturated",
            "Llama pod 2xkqp keeps its GPU at 100% utilisation",
            ("GPUUtilizationSaturated",),
            {"hostname": "gpu-node-a", "gpu": "0"},
        ),
        Scenario(
            "gpu_idle",
            "The staging Llama pod holds a GPU it does not use",
            ("GPUAllocatedButIdle",),
            {"hostname": "gpu-node-b", "gpu": "2"},
        ),
        Scenario(
            "k8s_crashloop",
            "TorchServe pod q8w4n is in CrashLoopBackOff",
            ("ModelServerCrashLooping", "ModelServerReplicasUnavailable"),
            {"namespace": "ts-prod", "deployment": "torchserve-bert"},
        ),
        Scenario(
            "k8s_statefulset_crashloop",
            "The StatefulSet pod llama-70b-0 is in CrashLoopBackOff (no Deployment to act on)",
            ("ModelServerCrashLooping",),
            {"namespace": "llm-prod", "pod": LLAMA_70B.pods[0]},
        ),
        Scenario(
            "k8s_oomkilled",
            "Triton's container is OOMKilled again and again",
            ("ModelServerOOMKilled",),
            {"namespace": "vision-prod", "deployment": "triton-vision"},
        ),
        Scenario(
            "k8s_replicas_unavailable",
            "Mistral was scaled to 4 but 3 pods stay Pending (no GPU capacity)",
            ("ModelServerReplicasUnavailable", "ModelServerReplicasBelowHalf", "GPUPodPendingTooLong"),
            {"namespace": "llm-prod", "deployment": "vllm-mistral"},
        ),
        Scenario(
            "model_drift",
            "fraud-detector's predictions and inputs drift from the training data",
            ("ModelPredictionDriftHigh", "ModelFeatureDriftHigh", "ModelDatasetDriftSustained"),
            {"namespace": "kserve-prod", "model_name": "fraud-detector"},
        ),
        Scenario(
            "model_error_rate",
            "churn-model's error rate on labelled feedback rises to 22%",
            ("ModelErrorRateHigh",),
            {"namespace": "kserve-prod", "model_name": "churn-model"},
        ),
        Scenario(
            "inference_cost",
            "Gemma's traffic collapses while it keeps its GPU: cost per 1k requests explodes",
            ("InferenceCostPer1kAboveBudget",),
            {"namespace": "llm-prod", "model_name": "google/gemma-2-9b-it"},
        ),
    ]
    return {s.name: s for s in items}


SCENARIOS: Mapping[str, Scenario] = _scenarios()
ALL = "all"


# --- distributions -----------------------------------------------------------------------------

# Bucket boundaries as the real servers define them (vllm/v1/metrics/buckets.py, Knative).
VLLM_LATENCY_BUCKETS = (
    *(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0),
    *(120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
)
VLLM_TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    *(20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)
VLLM_ITL_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    *(20.0, 40.0, 80.0),
)
KNATIVE_MS_BUCKETS = (
    *(5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000),
    *(2000, 5000, 10000, 20000, 50000, 100000),
)
PROM_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class LogNormal:
    """Latency distribution given by its median and log-space spread."""

    median: float
    sigma: float = 0.5

    def cdf(self, x: float) -> float:
        if x <= 0:
            return 0.0
        return 0.5 * (1.0 + math.erf((math.log(x) - math.log(self.median)) / (self.sigma * math.sqrt(2.0))))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2.0)


# --- simulation state --------------------------------------------------------------------------


def _labels(**labels: str) -> LabelSet:
    return tuple(sorted(labels.items()))


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0.0] * len(self.buckets)
        self.count = 0.0
        self.total = 0.0

    def observe_many(self, n: float, dist: LogNormal) -> None:
        if n <= 0:
            return
        for i, le in enumerate(self.buckets):
            self.counts[i] += n * dist.cdf(le)
        self.count += n
        self.total += n * dist.mean


@dataclass(frozen=True)
class _Family:
    name: str  # as exposed (counters keep the name the real exporter uses, with or without _total)
    kind: str  # counter | gauge | histogram
    help: str


class _Fleet:
    """All series of the fleet and how they move; `tick(dt)` advances time by dt seconds."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        self.counters: dict[tuple[str, LabelSet], float] = {}
        self.gauges: dict[tuple[str, LabelSet], float] = {}
        self.histograms: dict[tuple[str, LabelSet], _Histogram] = {}
        self.active: frozenset[str] = frozenset()
        self.activated_at: dict[str, float] = {}
        self.clock = 0.0  # seconds of simulated (= wall) time since start

    # -- primitives

    def _family(self, name: str, kind: str, help_text: str) -> None:
        if name not in self.families:
            self.families[name] = _Family(name, kind, help_text)

    def inc(self, name: str, help_text: str, labels: LabelSet, amount: float) -> None:
        self._family(name, "counter", help_text)
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + max(amount, 0.0)

    def gauge(self, name: str, help_text: str, labels: LabelSet, value: float) -> None:
        self._family(name, "gauge", help_text)
        self.gauges[(name, labels)] = value

    def observe(
        self, name: str, help_text: str, labels: LabelSet, buckets: Sequence[float], n: float, dist: LogNormal
    ) -> None:
        self._family(name, "histogram", help_text)
        key = (name, labels)
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = _Histogram(buckets)
        hist.observe_many(n, dist)

    def fault(self, name: str) -> bool:
        return name in self.active

    def fault_age(self, name: str) -> float:
        """Seconds since the fault was switched on (0 when it is off)."""
        return max(0.0, self.clock - self.activated_at[name]) if name in self.active else 0.0

    def set_active(self, names: frozenset[str]) -> None:
        for name in names - self.active:
            self.activated_at[name] = self.clock
        self.active = names
        # Gauges describe the present: a series that stops existing (a waiting reason, an
        # XID code label) must disappear, so they are rebuilt from scratch on every tick.
        self.gauges.clear()

    # -- time

    def tick(self, dt: float) -> None:
        self.clock += dt
        self.gauges.clear()
        for workload in VLLM_WORKLOADS:
            self._vllm(workload, dt)
        self._triton(dt)
        self._knative(dt)
        self._kserve(dt)
        self._torchserve(dt)
        self._dcgm()
        self._kube(dt)
        self._quality()
        self._opencost()

    # -- vLLM

    def _vllm(self, w: Workload, dt: float) -> None:
        t = self.clock
        is_llama, is_mistral = w is VLLM_LLAMA, w is VLLM_MISTRAL
        stalled = is_mistral and self.fault("vllm_stalled")
        slow = is_llama and self.fault("vllm_latency")
        queueing = is_llama and self.fault("vllm_queue")
        kv_full = is_llama and self.fault("vllm_kv_cache")
        errors = w is VLLM_QWEN and self.fault("vllm_errors")
        idle = w is VLLM_GEMMA and self.fault("inference_cost")
        rps = 0.0 if stalled else 0.02 if idle else 6.0 if w is VLLM_GEMMA else 8.0
        for index, pod in enumerate(w.pods):
            lbl = _labels(namespace=w.namespace, pod=pod, model_name=w.model_name, engine="0")
            phase = index * 0.7
            waiting = (
                30.0
                if stalled
                else 15.0 + 0.5 * self.fault_age("vllm_queue")
                if queueing
                else 1.0 + math.sin(t / 7 + phase)
            )
            self.gauge(
                "vllm:num_requests_waiting",
                "Requests waiting to be scheduled.",
                lbl,
                round(max(waiting, 0.0)),
            )
            running = 12.0 if stalled else 24.0 if (kv_full or slow) else 6.0 + 2 * math.sin(t / 5 + phase)
            self.gauge("vllm:num_requests_running", "Requests in the running batch.", lbl, round(running))
            kv = 0.985 if kv_full else 0.62 if stalled else 0.45 + 0.1 * math.sin(t / 11 + phase)
            self.gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 1 = 100%.", lbl, kv)
            n = rps * dt
            self.inc("vllm:prompt_tokens_total", "Prefill tokens processed.", lbl, n * 620)
            self.inc("vllm:generation_tokens_total", "Generation tokens processed.", lbl, n * 240)
            self.inc(
                "vllm:num_preemptions_total", "Cumulative preemptions.", lbl, (0.6 if kv_full else 0.0) * dt
            )
            queries = n * 620
            self.inc("vllm:prefix_cache_queries_total", "Prefix-cache queries, in tokens.", lbl, queries)
            self.inc("vllm:prefix_cache_hits_total", "Prefix-cache hits, in tokens.", lbl, queries * 0.42)
            mix = {"stop": 0.84, "length": 0.14, "abort": 0.02, "error": 0.0}
            if errors:
                mix = {"stop": 0.6, "length": 0.15, "abort": 0.05, "error": 0.2}
            for reason, share in mix.items():
                self.inc(
                    "vllm:request_success_total",
                    "Finished requests, by finish reason.",
                    _labels(**dict(lbl), finished_reason=reason),
                    n * share,
                )
            e2e = LogNormal(12.0 if slow else 9.0 if queueing else 1.6, 0.5)
            ttft = LogNormal(3.5 if slow else 1.8 if queueing else 0.09, 0.6)
            itl = LogNormal(0.25 if slow else 0.022, 0.4)
            queue = LogNormal(8.0 if queueing else 0.04, 0.6)
            b = VLLM_LATENCY_BUCKETS
            self.observe("vllm:e2e_request_latency_seconds", "End-to-end request latency.", lbl, b, n, e2e)
            self.observe("vllm:request_queue_time_seconds", "Time spent WAITING.", lbl, b, n, queue)
            self.observe(
                "vllm:request_inference_time_seconds",
                "Time spent RUNNING.",
                lbl,
                b,
                n,
                LogNormal(e2e.median * 0.9),
            )
            self.observe(
                "vllm:time_to_first_token_seconds", "Time to first token.", lbl, VLLM_TTFT_BUCKETS, n, ttft
            )
            self.observe(
                "vllm:inter_token_latency_seconds",
                "Inter-token latency.",
                lbl,
                VLLM_ITL_BUCKETS,
                n * 240,
                itl,
            )
            http = _labels(namespace=w.namespace, pod=pod, handler="/v1/chat/completions", method="POST")
            for status, share in (
                ("2xx", 0.8 if errors else 0.995),
                ("4xx", 0.005),
                ("5xx", 0.195 if errors else 0.0),
            ):
                if share > 0:
                    self.inc(
                        "http_requests_total",
                        "Total HTTP requests.",
                        _labels(**dict(http), status=status),
                        n * share,
                    )

    # -- Triton

    def _triton(self, dt: float) -> None:
        pod = TRITON.pods[0]
        for model, version in TRITON_MODELS:
            slow = model == "resnet50" and self.fault("triton_latency")
            failing = model == "yolov8" and self.fault("triton_failures")
            lbl = _labels(namespace=TRITON.namespace, pod=pod, model=model, version=version)
            rps = 40.0 if model == "resnet50" else 15.0
            n = rps * dt
            request_s, queue_s = (1.8, 1.5) if slow else (0.025, 0.002)
            self.inc("nv_inference_request_success", "Successful inference requests.", lbl, n)
            for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
                amount = n * 0.3 if failing and reason == "BACKEND" else 0.0
                self.inc(
                    "nv_inference_request_failure",
                    "Failed inference requests.",
                    _labels(**dict(lbl), reason=reason),
                    amount,
                )
            self.inc("nv_inference_count", "Inferences performed (batch of n counts n).", lbl, n * 4)
            self.inc("nv_inference_exec_count", "Model executions (batches).", lbl, n)
            self.inc(
                "nv_inference_request_duration_us",
                "Cumulative request duration, us.",
                lbl,
                n * request_s * 1e6,
            )
            self.inc(
                "nv_inference_queue_duration_us", "Cumulative queue duration, us.", lbl, n * queue_s * 1e6
            )
            self.inc(
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute duration, us.",
                lbl,
                n * (request_s - queue_s) * 0.8e6,
            )
            pending = (
                60.0 + 2.0 * self.fault_age("triton_latency") if slow else 1.0 + math.sin(self.clock / 3)
            )
            self.gauge(
                "nv_inference_pending_request_count", "Pending requests.", lbl, round(max(pending, 0.0))
            )

    # -- Knative queue-proxy and the KServe model server

    def _knative(self, dt: float) -> None:
        for rev in KNATIVE_REVISIONS:
            slow = rev is KN_IRIS and self.fault("kserve_latency")
            failing = rev is KN_FRAUD and self.fault("kserve_errors")
            base = _labels(
                namespace=rev.namespace,
                pod=rev.pod,
                namespace_name=rev.namespace,
                service_name=rev.service,
                configuration_name=rev.service,
                revision_name=rev.revision,
                pod_name=rev.pod,
                container_name="queue-proxy",
            )
            n = 25.0 * dt
            for code, klass, share in (
                ("200", "2xx", 0.75 if failing else 0.999),
                ("500", "5xx", 0.25 if failing else 0.001),
            ):
                lbl = _labels(**dict(base), response_code=code, response_code_class=klass)
                self.inc(
                    "revision_app_request_count", "Requests forwarded to the user container.", lbl, n * share
                )
                self.observe(
                    "revision_app_request_latencies",
                    "Latency of requests forwarded to the user container, ms.",
                    lbl,
                    KNATIVE_MS_BUCKETS,
                    n * share,
                    LogNormal(3000.0 if slow else 45.0, 0.5),
                )
            rev_lbl = _labels(
                namespace_name=rev.namespace,
                service_name=rev.service,
                configuration_name=rev.service,
                revision_name=rev.revision,
            )
            self.gauge("autoscaler_desired_pods", "Pods the autoscaler wants.", rev_lbl, 1)
            self.gauge("autoscaler_actual_pods", "Pods that are ready.", rev_lbl, 1)
            self.gauge("autoscaler_panic_mode", "1 while in panic mode.", rev_lbl, 0)

    def _kserve(self, dt: float) -> None:
        slow = self.fault("kserve_predict_latency")
        lbl = _labels(
            namespace=KSERVE_CHURN.namespace, pod=KSERVE_CHURN.pods[0], model_name=KSERVE_CHURN.model_name
        )
        n = 12.0 * dt
        b = PROM_DEFAULT_BUCKETS
        self.observe("request_preprocess_seconds", "pre-process request latency", lbl, b, n, LogNormal(0.002))
        self.observe(
            "request_predict_seconds",
            "predict request latency",
            lbl,
            b,
            n,
            LogNormal(2.5 if slow else 0.03, 0.5),
        )
        self.observe(
            "request_postprocess_seconds", "post-process request latency", lbl, b, n, LogNormal(0.001)
        )

    # -- TorchServe

    def _torchserve(self, dt: float) -> None:
        for index, pod in enumerate(TORCHSERVE.pods):
            for model, version in TORCHSERVE_MODELS:
                slow = model == "bert_seq_cls" and self.fault("torchserve_latency")
                lbl = _labels(
                    namespace=TORCHSERVE.namespace,
                    pod=pod,
                    model_name=model,
                    model_version=version,
                    hostname=pod,
                )
                n = (30.0 if model == "bert_seq_cls" else 10.0) * dt
                latency_ms, queue_ms = (900.0, 400.0) if slow else (40.0, 3.0)
                self.inc("ts_inference_requests_total", "Inference requests received.", lbl, n)
                self.inc(
                    "ts_inference_latency_microseconds",
                    "Cumulative inference latency, us.",
                    lbl,
                    n * latency_ms * 1e3,
                )
                self.inc(
                    "ts_queue_latency_microseconds", "Cumulative queue latency, us.", lbl, n * queue_ms * 1e3
                )
            host = _labels(namespace=TORCHSERVE.namespace, pod=pod, Level="Host", Hostname=pod)
            errors = index == 0 and self.fault("torchserve_errors")
            total = 40.0 * dt
            self.inc("Requests2XX", "HTTP 2xx responses.", host, total * (0.8 if errors else 0.99))
            self.inc("Requests4XX", "HTTP 4xx responses.", host, total * 0.01)
            if errors or ("Requests5XX", host) in self.counters:
                # Like TorchServe: the series only exists after the first 5xx.
                self.inc("Requests5XX", "HTTP 5xx responses.", host, total * 0.19 if errors else 0.0)
            self.gauge(
                "QueueTime",
                "Queue time of the last request, ms.",
                host,
                400.0 if self.fault("torchserve_latency") else 3.0,
            )

    # -- DCGM exporter

    def _gpu_owner(self, node: str, index: int) -> Workload | None:
        for w in ALL_WORKLOADS:
            if (node, index) in w.gpus:
                return w
        return None

    def _dcgm(self) -> None:
        t = self.clock
        for node in GPU_NODES:
            for index in range(node.gpus):
                owner = self._gpu_owner(node.name, index)
                base: dict[str, str] = {
                    "gpu": str(index),
                    "UUID": f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{node.name}/{index}')}",
                    "pci_bus_id": f"00000000:{0x10 + index:02X}:00.0",
                    "device": f"nvidia{index}",
                    "modelName": node.gpu_model,
                    "Hostname": node.name,
                    "DCGM_FI_DRIVER_VERSION": "550.90.07",
                }
                if owner is not None:
                    pod = owner.pods[owner.gpus.index((node.name, index))]
                    base.update(namespace=owner.namespace, pod=pod, container=owner.container)
                lbl = _labels(**base)
                here = (node.name, index)
                util = 30.0 + 15 * math.sin(t / 13 + index)
                if here == ("gpu-node-a", 0) and self.fault("gpu_saturated"):
                    util = 100.0
                elif here == ("gpu-node-b", 2) and self.fault("gpu_idle"):
                    util = 1.0
                elif owner is None:
                    util = 0.0
                self.gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lbl, round(util))
                self.gauge(
                    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                    "Ratio of time the graphics engine is active.",
                    lbl,
                    util / 100,
                )
                used_share = 0.0 if owner is None else 0.9 if owner.container == "vllm" else 0.55
                if here == ("gpu-node-b", 1) and self.fault("gpu_memory"):
                    used_share = 0.98
                used = round(node.framebuffer_mib * used_share)
                self.gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lbl, used)
                self.gauge(
                    "DCGM_FI_DEV_FB_FREE",
                    "Framebuffer memory free (in MiB).",
                    lbl,
                    node.framebuffer_mib - used,
                )
                self.gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lbl, round(48 + util / 4))
                self.gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lbl, round(60 + util * 2.5, 1))
                xid = 79 if here == ("gpu-node-b", 0) and self.fault("gpu_xid") else 0
                message = "GPU has fallen off the bus" if xid else "No Error"
                self.gauge(
                    "DCGM_FI_DEV_XID_ERRORS",
                    "Value of the last XID error encountered.",
                    _labels(**base, err_code=str(xid), err_msg=message),
                    xid,
                )

    # -- kube-state-metrics and cAdvisor

    def _kube(self, dt: float) -> None:
        for node in GPU_NODES:
            self.gauge(
                "kube_node_status_allocatable",
                "Allocatable resources of the node.",
                _labels(node=node.name, resource="nvidia_com_gpu", unit="integer"),
                node.gpus,
            )
        crashloop = self.fault("k8s_crashloop")
        oom = self.fault("k8s_oomkilled")
        pending = self.fault("k8s_replicas_unavailable")
        for w in ALL_WORKLOADS:
            if w.kind == "Deployment":
                self._deployment(w, crashloop=crashloop, pending=pending)
            pods = list(w.pods)
            if w is VLLM_MISTRAL and pending:
                pods += [f"vllm-mistral-5f6b8d9c7d-{suffix}" for suffix in ("b2c4d", "f6g7h", "j8k9l")]
            for pod in pods:
                is_pending = pod not in w.pods
                container = _labels(
                    namespace=w.namespace,
                    pod=pod,
                    container=w.container,
                    uid=str(uuid.uuid5(uuid.NAMESPACE_URL, pod)),
                )
                crashing = (crashloop and w is TORCHSERVE and pod == w.pods[1]) or (
                    w is LLAMA_70B and self.fault("k8s_statefulset_crashloop")
                )
                oom_killed = oom and w is TRITON
                restarts_every = 3.0 if (crashing or oom_killed) else 0.0
                self.inc(
                    "kube_pod_container_status_restarts_total",
                    "Container restarts.",
                    container,
                    dt / restarts_every if restarts_every else 0.0,
                )
                for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
                    value = 1 if phase == ("Pending" if is_pending else "Running") else 0
                    self.gauge(
                        "kube_pod_status_phase",
                        "Pod phase.",
                        _labels(namespace=w.namespace, pod=pod, uid=dict(container)["uid"], phase=phase),
                        value,
                    )
                if crashing:
                    self.gauge(
                        "kube_pod_container_status_waiting_reason",
                        "Why the container is waiting.",
                        _labels(**dict(container), reason="CrashLoopBackOff"),
                        1,
                    )
                    self.gauge(
                        "kube_pod_container_status_last_terminated_reason",
                        "Why the container last terminated.",
                        _labels(**dict(container), reason="Error"),
                        1,
                    )
                    self.gauge(
                        "kube_pod_container_status_last_terminated_exitcode", "Last exit code.", container, 1
                    )
                if oom_killed:
                    self.gauge(
                        "kube_pod_container_status_last_terminated_reason",
                        "Why the container last terminated.",
                        _labels(**dict(container), reason="OOMKilled"),
                        1,
                    )
                    self.gauge(
                        "kube_pod_container_status_last_terminated_exitcode",
                        "Last exit code.",
                        container,
                        137,
                    )
                node_name = w.gpus[w.pods.index(pod)][0] if w.gpus and pod in w.pods else ""
                res = dict(container, node=node_name) if node_name else dict(container)
                if w.gpus:
                    self.gauge(
                        "kube_pod_container_resource_requests",
                        "Requested resources.",
                        _labels(**res, resource="nvidia_com_gpu", unit="integer"),
                        1,
                    )
                limit = 64 * 2**30 if w.gpus else 4 * 2**30
                self.gauge(
                    "kube_pod_container_resource_limits",
                    "Resource limits.",
                    _labels(**res, resource="memory", unit="byte"),
                    limit,
                )
                if not is_pending:
                    share = 0.97 if oom_killed else 0.55 + 0.05 * math.sin(self.clock / 9)
                    self.gauge(
                        "container_memory_working_set_bytes",
                        "Current working set in bytes.",
                        _labels(
                            namespace=w.namespace,
                            pod=pod,
                            container=w.container,
                            image=f"registry.example/{w.container}:stable",
                        ),
                        round(limit * share),
                    )

    def _deployment(self, w: Workload, *, crashloop: bool, pending: bool) -> None:
        dep = _labels(namespace=w.namespace, deployment=w.deployment)
        spec = len(w.pods)
        available = spec
        if w is TORCHSERVE and crashloop:
            available = spec - 1
        if w is VLLM_MISTRAL and pending:
            spec = 4
            available = 1
        self.gauge("kube_deployment_spec_replicas", "Desired replicas.", dep, spec)
        self.gauge("kube_deployment_status_replicas_available", "Available replicas.", dep, available)
        self.gauge(
            "kube_deployment_status_replicas_unavailable", "Unavailable replicas.", dep, spec - available
        )
        self.gauge("kube_deployment_metadata_generation", "Deployment generation.", dep, 7)
        self.gauge("kube_deployment_status_observed_generation", "Observed generation.", dep, 7)

    # -- model quality (ml_* convention) and OpenCost

    def _quality(self) -> None:
        now = time.time()
        for namespace, deployment, model, version, features in QUALITY_MODELS:
            drifting = model == "fraud-detector" and self.fault("model_drift")
            worse = model == "churn-model" and self.fault("model_error_rate")
            common = {
                "namespace": namespace,
                "deployment": deployment,
                "model_name": model,
                "model_version": version,
            }
            for feature in (*features, "prediction"):
                score = 0.03 + (len(feature) % 5) / 100
                if drifting and feature in ("prediction", "amount"):
                    score = 0.41 if feature == "amount" else 0.34
                self.gauge(
                    "ml_feature_drift_score",
                    "Drift statistic of the latest window (PSI).",
                    _labels(**common, feature=feature, method="psi", reference="training"),
                    score,
                )
            self.gauge(
                "ml_dataset_drift_detected",
                "1 when the dataset drifted.",
                _labels(**common, reference="training"),
                1 if drifting else 0,
            )
            self.gauge(
                "ml_dataset_drifted_features_ratio",
                "Share of features that drifted.",
                _labels(**common, reference="training"),
                0.5 if drifting else 0.0,
            )
            monitor = _labels(namespace=namespace, deployment=deployment, model_name=model, monitor="drift")
            self.gauge("ml_monitor_window_rows", "Rows in the evaluation window.", monitor, 5200)
            self.gauge(
                "ml_monitor_last_success_timestamp_seconds",
                "Last successful monitor run.",
                monitor,
                now - 600,
            )
            self.gauge(
                "ml_model_quality",
                "Model quality on labelled feedback.",
                _labels(**common, metric="accuracy", window="1d"),
                0.78 if worse else 0.94,
            )

    def _opencost(self) -> None:
        for node in GPU_NODES:
            lbl = _labels(
                instance=node.name,
                node=node.name,
                instance_type=node.instance_type,
                region="us-east-1",
                provider_id=f"aws:///us-east-1a/i-{uuid.uuid5(uuid.NAMESPACE_DNS, node.name).hex[:17]}",
                arch="amd64",
            )
            self.gauge(
                "node_gpu_hourly_cost", "Hourly cost per GPU on this node, USD.", lbl, node.hourly_cost
            )
            self.gauge("node_gpu_count", "GPUs on this node.", lbl, node.gpus)
        for w in ALL_WORKLOADS:
            for pod, (node_name, _index) in zip(w.pods, w.gpus, strict=False):
                self.gauge(
                    "container_gpu_allocation",
                    "GPUs allocated to the container.",
                    _labels(
                        instance=node_name,
                        node=node_name,
                        namespace=w.namespace,
                        pod=pod,
                        container=w.container,
                    ),
                    1,
                )


# --- exposition --------------------------------------------------------------------------------


class _FleetCollector:
    """prometheus_client collector over a `_Fleet` snapshot."""

    def __init__(self, snapshot: Callable[[], _Fleet]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        fleet = self._snapshot()
        by_name: dict[str, Metric] = {}
        for fam in fleet.families.values():
            by_name[fam.name] = Metric(fam.name, fam.help, fam.kind)
        for (name, labels), value in sorted(fleet.counters.items()):
            by_name[name].add_sample(name, dict(labels), math.floor(value))
        for (name, labels), value in sorted(fleet.gauges.items()):
            by_name[name].add_sample(name, dict(labels), value)
        for (name, labels), hist in sorted(fleet.histograms.items(), key=lambda item: item[0]):
            metric = by_name[name]
            count = math.floor(hist.count)
            for le, cumulative in zip(hist.buckets, hist.counts, strict=True):
                metric.add_sample(
                    f"{name}_bucket", {**dict(labels), "le": floatToGoString(le)}, math.floor(cumulative)
                )
            metric.add_sample(f"{name}_bucket", {**dict(labels), "le": "+Inf"}, count)
            metric.add_sample(f"{name}_count", dict(labels), count)
            metric.add_sample(f"{name}_sum", dict(labels), hist.total)
        for name in sorted(by_name):
            if by_name[name].samples:
                yield by_name[name]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(registry: CollectorRegistry) -> str:
    """Prometheus text format 0.0.4, naming each family as the real exporters do.

    prometheus_client's own writer renames every counter family to `<name>_total`, but
    Triton (prometheus-cpp), TorchServe and Knative expose counters without that suffix,
    and `# TYPE` must name the series that follow; so the text is written here.
    """
    lines: list[str] = []
    for metric in registry.collect():
        if not metric.samples:
            continue
        type_name = metric.samples[0].name if metric.type == "counter" else metric.name
        doc = metric.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {type_name} {doc}")
        lines.append(f"# TYPE {type_name} {metric.type}")
        for sample in metric.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
            lines.append(
                f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}"
                if labels
                else f"{sample.name} {floatToGoString(sample.value)}"
            )
    return "\n".join(lines) + "\n"


# --- the server --------------------------------------------------------------------------------


class ModelServingExporter:
    """The fleet behind a threaded HTTP server on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        scenario: str = "healthy",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._fleet = _Fleet()
        self._last = clock()
        self._fleet.set_active(self._parse(scenario))
        self._fleet.tick(0.0)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_FleetCollector(self._advance))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scenarios

    @staticmethod
    def _parse(spec: str) -> frozenset[str]:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        if names == [ALL]:
            return frozenset(n for n in SCENARIOS if n != "healthy")
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown or not names:
            known = ", ".join([*SCENARIOS, ALL])
            shown = ", ".join(unknown) or repr(spec)
            raise ValueError(f"unknown scenario {shown}; known: {known}")
        return frozenset(n for n in names if n != "healthy")

    def set_scenario(self, name: str) -> None:
        """Switch faults: one scenario name, several separated by commas, "healthy" or "all"."""
        active = self._parse(name)
        with self._lock:
            self._catch_up()
            self._fleet.set_active(active)
            self._fleet.tick(0.0)
        logger.info("exporter scenario changed", extra={"scenario": name})

    @property
    def active_scenarios(self) -> list[str]:
        with self._lock:
            return sorted(self._fleet.active)

    # -- time

    def _catch_up(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        # Long gaps (a paused test) are replayed in steps so growing gauges stay smooth.
        while dt > 5.0:
            self._fleet.tick(5.0)
            dt -= 5.0
        self._fleet.tick(dt)

    def _advance(self) -> _Fleet:
        with self._lock:
            self._catch_up()
            snapshot = _Fleet()
            snapshot.families = dict(self._fleet.families)
            snapshot.counters = dict(self._fleet.counters)
            snapshot.gauges = dict(self._fleet.gauges)
            snapshot.histograms = {k: _copy_hist(v) for k, v in self._fleet.histograms.items()}
            return snapshot

    def metrics_text(self) -> str:
        return exposition(self.registry)

    # -- HTTP

    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self._host, self._requested_port), handler)
        self._server.daemon_threads = True
        self._thread = serve_in_background(self._server, name="model-serving-exporter")
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        shut_down(self._server, self._thread)
        self._server = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("exporter not started")
        return int(self._server.server_address[1])

    @property
    def target(self) -> str:
        """`host:port`, as a Prometheus scrape target."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _copy_hist(hist: _Histogram) -> _Histogram:
    copy = _Histogram(hist.buckets)
    copy.counts = list(hist.counts)
    copy.count = hist.count
    copy.total = hist.total
    return copy


def _make_handler(exporter: ModelServingExporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "model-serving-exporter/1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("exporter request", extra={"request": format % args})

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload) + "\n", "application/json")

        def _state(self) -> dict[str, Any]:
            return {"active": exporter.active_scenarios, "available": [*SCENARIOS, ALL]}

        def do_GET(self) -> None:
            if self.path in ("/metrics", "/metrics/"):
                self._send(200, exporter.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
            elif self.path == "/scenario":
                self._json(200, self._state())
            elif self.path == "/":
                names = "".join(f"<li>{s.name}: {s.description}</li>" for s in SCENARIOS.values())
                self._send(
                    200,
                    f"<h1>model-serving exporter</h1><a href='/metrics'>/metrics</a><ul>{names}</ul>",
                    "text/html",
                )
            else:
                self._json(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:
            prefix = "/scenario/"
            if not self.path.startswith(prefix):
                self._json(404, {"error": f"no such path {self.path}; POST /scenario/<name>"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            try:
                exporter.set_scenario(self.path[len(prefix) :])
            except ValueError as exc:
                self._json(404, {"error": str(exc)})
                return
            self._json(200, self._state())

    return Handler
