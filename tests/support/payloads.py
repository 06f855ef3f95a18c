"""Alertmanager webhook payloads for tests: the recorded real ones in tests/payloads/ (see
SOURCES.md there), and a builder that produces what Alertmanager 0.25+ sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.alerts import fingerprint_of

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"
ZERO = "0001-01-01T00:00:00Z"
# One fixed start a few minutes before the tests run: the same alert built twice is the same
# occurrence (same fingerprint and startsAt), as Alertmanager would send it.
FIXED_START = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return data


def recorded_bytes(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert(
    alertname: str = "VLLMHighE2ELatency",
    *,
    status: str = "firing",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, "namespace": "llm-prod", "severity": "critical", **labels}
    started = starts_at or FIXED_START
    ended = ends_at or (datetime.now(UTC) if status == "resolved" else None)
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations
        if annotations is not None
        else {"summary": "p99 latency above 2s", "description": "vLLM requests are slow."},
        "startsAt": rfc3339(started),
        "endsAt": rfc3339(ended) if ended else ZERO,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
        "fingerprint": fingerprint_of(all_labels),
    }


def notification(
    *alerts: dict[str, Any],
    group_key: str = '{}:{alertname="VLLMHighE2ELatency"}',
    receiver: str = "incident-bot",
    **extra: Any,
) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    common_labels = dict(alerts[0]["labels"])
    for item in alerts[1:]:
        common_labels = {k: v for k, v in common_labels.items() if item["labels"].get(k) == v}
    common_annotations = dict(alerts[0]["annotations"])
    for item in alerts[1:]:
        common_annotations = {k: v for k, v in common_annotations.items() if item["annotations"].get(k) == v}
    body: dict[str, Any] = {
        "receiver": receiver,
        "status": "firing" if firing else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }
    body.update(extra)
    return body
