"""A model's incidents over a window, from the incident records: how many, how fast they were
acknowledged and resolved (medians), minutes with a critical one open, and the open ones.

An incident belongs to a model when the labels all its alerts share name the model the way
its server does (`model_name`, Triton's `model`, KServe's `service_name` or
`inference_service`) and, when they carry a namespace, the same namespace.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import col, or_, select

from bot.db import transaction
from bot.incidents.models import Incident, IncidentStatus, Severity

__all__ = ["IncidentStats", "OpenIncident", "incident_stats", "load_incidents", "names_model"]

_MODEL_LABELS = ("model_name", "model", "service_name", "inference_service", "isvc")
_NAMESPACE_LABELS = ("namespace", "namespace_name", "exported_namespace")


@dataclass(frozen=True)
class OpenIncident:
    id: int
    severity: str
    status: str
    title: str
    created_at: datetime


@dataclass(frozen=True)
class IncidentStats:
    incidents: int = 0
    mtta_seconds: float | None = None
    mttr_seconds: float | None = None
    critical_minutes: float = 0.0
    open: tuple[OpenIncident, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Row:
    id: int
    severity: str
    status: str
    title: str
    labels: dict[str, str]
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None


def load_incidents(engine: Engine, since: datetime) -> list[_Row]:
    """Incidents created since `since` or still open (an old open one is open now)."""
    with transaction(engine) as session:
        rows = session.exec(
            select(Incident).where(
                or_(col(Incident.created_at) >= since, Incident.status != IncidentStatus.RESOLVED)
            )
        ).all()
        return [
            _Row(
                id=i.id or 0,
                severity=i.severity,
                status=i.status,
                title=i.title,
                labels=dict(i.common_labels or {}),
                created_at=i.created_at,
                acknowledged_at=i.acknowledged_at,
                resolved_at=i.resolved_at,
            )
            for i in rows
        ]


def names_model(labels: dict[str, str], names: Iterable[str], namespace: str) -> bool:
    wanted = set(names)
    if not any(labels.get(label) in wanted for label in _MODEL_LABELS):
        return False
    namespaces = [labels[n] for n in _NAMESPACE_LABELS if labels.get(n)]
    return not namespaces or not namespace or namespace in namespaces


def incident_stats(
    rows: Sequence[_Row], names: Iterable[str], namespace: str, *, start: datetime, end: datetime
) -> IncidentStats:
    names = tuple(names)
    mine = [r for r in rows if names_model(r.labels, names, namespace)]
    in_window = [r for r in mine if start <= r.created_at <= end]
    ack = [(r.acknowledged_at - r.created_at).total_seconds() for r in in_window if r.acknowledged_at]
    res = [(r.resolved_at - r.created_at).total_seconds() for r in in_window if r.resolved_at]
    critical = timedelta()
    for r in mine:
        if r.severity != Severity.CRITICAL:
            continue
        opened, closed = max(r.created_at, start), min(r.resolved_at or end, end)
        if closed > opened:
            critical += closed - opened
    open_now = tuple(
        OpenIncident(r.id, r.severity, r.status, r.title, r.created_at)
        for r in sorted(mine, key=lambda r: r.created_at, reverse=True)
        if r.status != IncidentStatus.RESOLVED
    )
    return IncidentStats(
        incidents=len(in_window),
        mtta_seconds=statistics.median(ack) if ack else None,
        mttr_seconds=statistics.median(res) if res else None,
        critical_minutes=round(critical.total_seconds() / 60, 1),
        open=open_now,
    )
