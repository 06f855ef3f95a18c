"""Incident tables and the shapes they leave the API in.

Tables hold what the bot must never lose; `*Public` models are what `/api/incidents` shows,
so internal columns (the open-group key, row versions) never leak through the API.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Column, Field, SQLModel

from bot.db import UTCDateTime, utcnow

__all__ = [
    "Alert",
    "AlertFacts",
    "AlertPublic",
    "AlertStatus",
    "Incident",
    "IncidentDetail",
    "IncidentPublic",
    "IncidentStatus",
    "Notification",
    "Severity",
    "SlackRequest",
    "TimelineEvent",
    "TimelineEventPublic",
]


class IncidentStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {Severity.CRITICAL: 3, Severity.WARNING: 2, Severity.INFO: 1}[self]


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def _ts(**kwargs: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kwargs))


def _json(**kwargs: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False, **kwargs))


class Incident(SQLModel, table=True):
    __tablename__ = "incidents"

    id: int | None = Field(default=None, primary_key=True)
    receiver: str = Field(index=True)
    group_key: str = Field(index=True)
    # Set to "<receiver> <groupKey>" while the incident is open and cleared when it
    # resolves: a unique column that allows many NULLs gives "one open incident per group"
    # on SQLite and PostgreSQL alike, even under concurrent notifications.
    open_key: str | None = Field(default=None, unique=True)
    status: str = Field(default=IncidentStatus.TRIGGERED, index=True)
    severity: str = Field(default=Severity.WARNING)
    severity_label: str | None = None
    severity_manual: bool = False
    title: str
    description: str | None = None
    service: str | None = None
    common_labels: dict[str, str] = _json()
    common_annotations: dict[str, str] = _json()
    external_url: str | None = None
    truncated_alerts: int = 0
    channel: str | None = None
    slack_ts: str | None = None
    # Why the root message could not be posted, when Slack refused it for good
    # (channel_not_found, not_in_channel...): shown by the API, and thread jobs stop queueing.
    slack_error: str | None = None
    incident_channel: str | None = None
    commander_id: str | None = None
    commander_name: str | None = None
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    resolve_reason: str | None = None
    manual_resolve: bool = False
    runbook_name: str | None = None
    runbook_version: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    # When the first alert began (Alertmanager's startsAt), which is before we heard of it:
    # the start of the impact window in a postmortem.
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    acknowledged_at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()

    @property
    def key(self) -> str:
        return f"INC-{self.id}"


class AlertFacts(Protocol):
    """What intake and its notices read of an alert: a stored `Alert`, or one just received
    (`bot.alerts.ReceivedAlert`) and inserted in bulk without an ORM object."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def alertname(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def annotations(self) -> dict[str, str]: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime | None: ...


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    __table_args__ = (sa.UniqueConstraint("incident_id", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id", index=True)
    fingerprint: str = Field(index=True)
    status: str = AlertStatus.FIRING
    alertname: str = ""
    labels: dict[str, str] = _json()
    annotations: dict[str, str] = _json()
    generator_url: str | None = None
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime | None = _ts()
    first_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class TimelineEvent(SQLModel, table=True):
    __tablename__ = "timeline_events"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    kind: str
    actor: str | None = None
    actor_name: str | None = None
    text: str
    data: dict[str, Any] = _json()


class Notification(SQLModel, table=True):
    """Every distinct webhook body ever accepted: the audit of what Alertmanager said, and
    the key that makes a re-sent notification a no-op."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    body_sha256: str = Field(unique=True)
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    receiver: str
    group_key: str
    status: str
    alert_count: int
    incident_id: int | None = Field(default=None, foreign_key="incidents.id")
    payload: dict[str, Any] = _json()


class SlackRequest(SQLModel, table=True):
    """Slack requests that changed something, by their identity (trigger_id, action_ts,
    event_id): written in the same transaction as the change, so a retried delivery or a
    replayed click finds its first run and does nothing, on any replica and after restarts."""

    __tablename__ = "slack_requests"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    incident_id: int | None = Field(default=None, foreign_key="incidents.id")
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class AlertPublic(BaseModel):
    fingerprint: str
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str | None
    starts_at: datetime
    ends_at: datetime | None


class TimelineEventPublic(BaseModel):
    at: datetime
    kind: str
    actor: str | None
    actor_name: str | None
    text: str


class IncidentPublic(BaseModel):
    id: int
    key: str
    status: str
    severity: str
    severity_label: str | None
    title: str
    description: str | None
    service: str | None
    receiver: str
    group_key: str
    channel: str | None
    ts: str | None
    slack_error: str | None
    incident_channel: str | None
    commander: str | None
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    resolve_reason: str | None = None
    created_at: datetime
    started_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    manual_resolve: bool
    runbook: str | None

    @classmethod
    def of(cls, incident: Incident) -> IncidentPublic:
        assert incident.id is not None
        return cls(
            id=incident.id,
            key=incident.key,
            status=incident.status,
            severity=incident.severity,
            severity_label=incident.severity_label,
            title=incident.title,
            description=incident.description,
            service=incident.service,
            receiver=incident.receiver,
            group_key=incident.group_key,
            channel=incident.channel,
            ts=incident.slack_ts,
            slack_error=incident.slack_error,
            incident_channel=incident.incident_channel,
            commander=incident.commander_id,
            acknowledged_by=incident.acknowledged_by,
            resolved_by=incident.resolved_by,
            resolve_reason=incident.resolve_reason,
            created_at=incident.created_at,
            started_at=incident.started_at,
            acknowledged_at=incident.acknowledged_at,
            resolved_at=incident.resolved_at,
            manual_resolve=incident.manual_resolve,
            runbook=incident.runbook_name,
        )


class IncidentDetail(IncidentPublic):
    alerts: list[AlertPublic]
    timeline: list[TimelineEventPublic]
    truncated_alerts: int
    labels: dict[str, str]
    annotations: dict[str, str]
