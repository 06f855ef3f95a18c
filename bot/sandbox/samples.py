"""Sample Alertmanager notifications for the demo, shaped as Alertmanager 0.25+ sends them,
with the labels the shipped vLLM rules and kube-prometheus discovery put on alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.alerts import fingerprint_of

__all__ = ["vllm_latency"]

ZERO = "0001-01-01T00:00:00Z"
_START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=4)


def _time(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def vllm_latency(status: str, *, replicas: int = 1) -> dict[str, Any]:
    """The vLLM p99 end-to-end latency alert on llama-3-8b, for `replicas` pods."""
    alerts: list[dict[str, Any]] = []
    for index in range(replicas):
        labels = {
            "alertname": "VLLMHighE2ELatency",
            "severity": "critical",
            "namespace": "llm-prod",
            "deployment": "vllm-llama",
            "model_name": "meta-llama/Llama-3.1-8B-Instruct",
            "pod": f"vllm-llama-7c9f6d8b4-{'xk2lp' if index == 0 else 'q8r4n'}",
        }
        started = _START + timedelta(minutes=2 * index)
        alerts.append(
            {
                "status": status,
                "labels": labels,
                "annotations": {
                    "summary": "p99 end-to-end latency above 2s",
                    "description": "p99 request latency of meta-llama/Llama-3.1-8B-Instruct is 4.2s "
                    "(SLO 2s) on vllm-llama in llm-prod.",
                    "runbook_url": "https://github.com/incident-bot/runbooks/blob/main/vllm-latency.md",
                },
                "startsAt": _time(started),
                "endsAt": _time(datetime.now(UTC)) if status == "resolved" else ZERO,
                "generatorURL": "http://prometheus.llm-prod.svc:9090/graph?g0.expr="
                "histogram_quantile%280.99%2C+sum+by+%28le%2C+model_name%29+%28rate%28"
                "vllm%3Ae2e_request_latency_seconds_bucket%5B5m%5D%29%29%29+%3E+2&g0.tab=1",
                "fingerprint": fingerprint_of(labels),
            }
        )
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    return {
        "receiver": "incident-bot",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": "VLLMHighE2ELatency", "namespace": "llm-prod"},
        "commonLabels": common,
        "commonAnnotations": {
            k: v
            for k, v in alerts[0]["annotations"].items()
            if all(a["annotations"].get(k) == v for a in alerts)
        },
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "version": "4",
        "groupKey": '{}:{alertname="VLLMHighE2ELatency", namespace="llm-prod"}',
        "truncatedAlerts": 0,
    }
