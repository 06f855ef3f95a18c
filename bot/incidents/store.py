"""Incident data access: queries and state transitions, given a session.

Nothing here commits or does I/O beyond the session; callers own the transaction, so an
incident change, its timeline events and the outbox jobs it causes land together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db import reading, utcnow
from bot.errors import NotFound
from bot.incidents.models import (
    Alert,
    AlertPublic,
    Incident,
    IncidentDetail,
    IncidentPublic,
    IncidentStatus,
    SlackRequest,
    TimelineEvent,
    TimelineEventPublic,
)

__all__ = [
    "Event",
    "add_event",
    "add_events",
    "alerts_of",
    "claim_request",
    "detail",
    "find_open",
    "get_incident",
    "list_incidents",
    "load_with_alerts",
    "open_key",
    "parse_incident_ref",
    "timeline_of",
]


def open_key(receiver: str, group_key: str) -> str:
    return f"{receiver}\x1f{group_key}"


def parse_incident_ref(ref: str | int) -> int:
    """Accept 42, "42", "INC-42", "inc-42" and "#42"; anything else names what was expected."""
    if isinstance(ref, int):
        return ref
    text = ref.strip().lstrip("#")
    if text.upper().startswith("INC-"):
        text = text[4:]
    if not text.isdigit():
        raise NotFound(f"{ref!r} is not an incident ID; use the number or key, e.g. 42 or INC-42")
    return int(text)


def get_incident(session: Session, ref: str | int, *, for_update: bool = False) -> Incident:
    number = parse_incident_ref(ref)
    query = select(Incident).where(Incident.id == number)
    if for_update and session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    incident = session.exec(query).first()
    if incident is None:
        raise NotFound(f"incident INC-{number} does not exist")
    return incident


def load_with_alerts(engine: Engine, incident_id: int | None) -> tuple[Incident, list[Alert]]:
    """The incident and its alerts, read in a transaction of their own: what every outbox
    handler starts from (blocking; call it in a worker thread)."""
    if incident_id is None:
        raise NotFound("job has no incident")
    with reading(engine) as session:
        incident = get_incident(session, incident_id)
        assert incident.id is not None
        return incident, list(alerts_of(session, incident.id))


def find_open(session: Session, receiver: str, group_key: str) -> Incident | None:
    return session.exec(select(Incident).where(Incident.open_key == open_key(receiver, group_key))).first()


def list_incidents(
    session: Session, *, open_only: bool = False, limit: int = 100, offset: int = 0
) -> Sequence[Incident]:
    query = select(Incident)
    if open_only:
        query = query.where(Incident.status != IncidentStatus.RESOLVED)
    return session.exec(query.order_by(col(Incident.id).desc()).limit(limit).offset(offset)).all()


def alerts_of(session: Session, incident_id: int) -> Sequence[Alert]:
    return session.exec(
        select(Alert).where(Alert.incident_id == incident_id).order_by(col(Alert.starts_at), col(Alert.id))
    ).all()


def timeline_of(session: Session, incident_id: int) -> Sequence[TimelineEvent]:
    return session.exec(
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(col(TimelineEvent.at), col(TimelineEvent.id))
    ).all()


def add_event(
    session: Session,
    incident: Incident,
    kind: str,
    text: str,
    *,
    actor: str | None = None,
    actor_name: str | None = None,
    at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> TimelineEvent:
    assert incident.id is not None
    event = TimelineEvent(
        incident_id=incident.id,
        kind=kind,
        text=text,
        actor=actor,
        actor_name=actor_name,
        at=at or utcnow(),
        data=data or {},
    )
    session.add(event)
    incident.updated_at = utcnow()
    session.add(incident)
    return event


@dataclass(frozen=True)
class Event:
    """A timeline event to add with `add_events`."""

    kind: str
    text: str
    at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)


def add_events(session: Session, incident: Incident, events: Sequence[Event]) -> None:
    """Add many events in one statement, without an ORM object each: a storm's incident opens
    with one "fired" event per alert, and building and flushing those objects one by one was
    most of the cost of applying it (bench/storm.py). They appear in `timeline_of` like the rest;
    they are not returned."""
    if not events:
        return
    assert incident.id is not None
    now = utcnow()
    session.execute(
        sa.insert(TimelineEvent.__table__),  # type: ignore[attr-defined]
        [
            {"incident_id": incident.id, "at": e.at or now, "kind": e.kind, "text": e.text, "data": e.data}
            for e in events
        ],
    )
    incident.updated_at = now
    session.add(incident)


def detail(session: Session, incident: Incident) -> IncidentDetail:
    assert incident.id is not None
    base = IncidentPublic.of(incident).model_dump()
    return IncidentDetail(
        **base,
        alerts=[AlertPublic.model_validate(a, from_attributes=True) for a in alerts_of(session, incident.id)],
        timeline=[
            TimelineEventPublic.model_validate(e, from_attributes=True)
            for e in timeline_of(session, incident.id)
        ],
        truncated_alerts=incident.truncated_alerts,
        labels=incident.common_labels,
        annotations=incident.common_annotations,
    )


def claim_request(session: Session, key: str, *, incident_id: int | None = None) -> bool:
    """Record that the Slack request `key` is being acted on; False if it already was (a
    retried delivery or a replayed click). Call inside the transaction that makes the change,
    so the record and the change commit together; a concurrent twin fails on the unique key."""
    key = key[:255]
    if session.exec(select(SlackRequest.id).where(SlackRequest.key == key)).first() is not None:
        return False
    session.add(SlackRequest(key=key, incident_id=incident_id))
    return True
