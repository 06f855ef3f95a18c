"""Without Prometheus and Alertmanager installed, the demo replays the notifications they would
send: one Alertmanager v4 webhook body per fault, firing when the fault starts affecting the
metrics and resolved when it stops, with the labels and annotations the shipped rules put on
their alerts (manifests/prometheus-rules.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from bot.alerts import fingerprint_of

__all__ = ["Replayer", "notification"]

ZERO = "0001-01-01T00:00:00Z"
RUNBOOKS = "https://github.com/your-org/incident-bot/blob/main/runbooks"

_LLAMA = {
    "alertname": "VLLMHighE2ELatency",
    "severity": "warning",
    "namespace": "llm-prod",
    "deployment": "vllm-llama",
    "model_name": "meta-llama/Llama-3.1-8B-Instruct",
}
_LLAMA_NOTES = {
    "summary": "vLLM p99 end-to-end latency 1m 2s for meta-llama/Llama-3.1-8B-Instruct",
    "description": "99% of requests to meta-llama/Llama-3.1-8B-Instruct (llm-prod/vllm-llama) finish "
    "within 1m 2s, above the 30s objective, for 10 minutes.",
    "current_replicas": "2",
    "runbook_url": f"{RUNBOOKS}/vllm-latency.yaml",
}

# fault key -> (labels, annotations) of the alert the shipped rules raise for it
RECORDED: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "latency": (_LLAMA, _LLAMA_NOTES),
    "bad_rollout": (_LLAMA, _LLAMA_NOTES),
    "errors": (
        {
            "alertname": "VLLMRequestErrorsHigh",
            "severity": "critical",
            "namespace": "llm-prod",
            "deployment": "vllm-qwen",
            "model_name": "Qwen/Qwen2.5-7B-Instruct",
        },
        {
            "summary": "vLLM requests of Qwen/Qwen2.5-7B-Instruct end in error or abort: 25%",
            "description": "25% of the requests to Qwen/Qwen2.5-7B-Instruct (llm-prod/vllm-qwen) finished "
            "with reason error or abort over the last 5 minutes.",
            "current_replicas": "1",
            "runbook_url": f"{RUNBOOKS}/vllm-errors.yaml",
        },
    ),
    "triton": (
        {
            "alertname": "TritonAvgRequestLatencyHigh",
            "severity": "warning",
            "namespace": "vision-prod",
            "deployment": "triton-vision",
            "model": "resnet50",
            "version": "1",
        },
        {
            "summary": "Triton resnet50 average request latency 2.4s",
            "description": "Average request latency of Triton model resnet50 v1 in vision-prod is 2.4s.",
            "runbook_url": f"{RUNBOOKS}/triton-latency.yaml",
        },
    ),
    "gpu_memory": (
        {
            "alertname": "GPUFramebufferMemoryHigh",
            "severity": "warning",
            "namespace": "ts-prod",
            "deployment": "torchserve-bert",
            "hostname": "gpu-node-b",
            "gpu": "1",
            "modelName": "NVIDIA A10G",
        },
        {
            "summary": "GPU 1 on gpu-node-b: framebuffer 98% used",
            "description": "The framebuffer of GPU 1 (NVIDIA A10G) on gpu-node-b is 98% used by "
            "ts-prod/torchserve-bert.",
            "runbook_url": f"{RUNBOOKS}/gpu-memory.yaml",
        },
    ),
    "drift": (
        {
            "alertname": "ModelPredictionDriftHigh",
            "severity": "warning",
            "namespace": "kserve-prod",
            "deployment": "fraud-detector-predictor-00005-deployment",
            "model_name": "fraud-detector",
            "model_version": "v5",
        },
        {
            "summary": "Prediction drift of fraud-detector v5 is 0.31",
            "description": "The prediction drift score of fraud-detector v5 in kserve-prod is 0.31, "
            "above 0.2, for an hour.",
            "runbook_url": f"{RUNBOOKS}/model-drift.yaml",
        },
    ),
}


def _time(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def notification(key: str, status: str, started: datetime) -> dict[str, Any]:
    """The webhook body Alertmanager posts for fault `key`'s alert ("firing" or "resolved")."""
    labels, annotations = RECORDED[key]
    alert = {
        "status": status,
        "labels": dict(labels),
        "annotations": dict(annotations),
        "startsAt": _time(started),
        "endsAt": _time(datetime.now(UTC)) if status == "resolved" else ZERO,
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=" + labels["alertname"],
        "fingerprint": fingerprint_of(labels),
    }
    group = {"alertname": labels["alertname"], "namespace": labels["namespace"]}
    return {
        "receiver": "incident-bot",
        "status": status,
        "alerts": [alert],
        "groupLabels": group,
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
    }


class Replayer:
    """Posts a recorded notification whenever a fault starts or stops affecting the metrics."""

    def __init__(self, webhook_url: str, token: str) -> None:
        self.webhook_url = webhook_url
        self.token = token
        self._firing: dict[str, datetime] = {}

    def update(self, active: dict[str, bool]) -> None:
        # Two faults with the same alert (latency, bad rollout) share one notification.
        wanted: dict[str, datetime] = {}
        for key, on in active.items():
            if on and key in RECORDED:
                alertname = RECORDED[key][0]["alertname"]
                if alertname in wanted:
                    continue
                wanted[alertname] = self._firing.get(alertname, datetime.now(UTC))
                if alertname not in self._firing:
                    self._post(key, "firing", wanted[alertname])
        for alertname, started in list(self._firing.items()):
            if alertname not in wanted:
                key = next(k for k, (labels, _) in RECORDED.items() if labels["alertname"] == alertname)
                self._post(key, "resolved", started)
        self._firing = wanted

    def _post(self, key: str, status: str, started: datetime) -> None:
        body = notification(key, status, started)
        headers = {"Authorization": f"Bearer {self.token}"}
        httpx.post(self.webhook_url, json=body, headers=headers, timeout=30).raise_for_status()
