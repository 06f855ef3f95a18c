"""The outbox jobs an incident change causes, in one place, so every flow (alerts, slash
commands, buttons) tells Slack the same way.

Kinds and lanes:
- `slack.post_root`   lane slack, priority 0: the incident's one root message.
- `slack.update_root` lane slack, priority 1, coalesced: re-render the root from current state.
- `slack.reply`       lane slack, priority 2: a thread reply, rendered when the change happened.
- `slack.postmortem`  lane slack, priority 4: the postmortem draft as a Markdown file in the thread.
- `slack.incident_channel` lane channel, priority 3: a channel of its own for an incident whose
  route asks for one (bot/slack/channels.py decides, from the route and current severity).
- `silences.expire` lane silences, priority 3: the incident resolved; end the silences the bot
  made for it (bot/flows/execution.py), so its alerts notify again if they come back.
Thread jobs wait for the root message (`needs_root`), and the lane keeps them in order.

This module knows no chat client: a change is queued as a `Notice` (its kind and the data to
show, with a snapshot of the incident as it was), and the Slack delivery handler renders it
(bot/slack/notices.py) when it posts. Flows that render their own message (actions) may
still queue a ready `message`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import column, table
from sqlmodel import Session, select

from bot.incidents.models import AlertFacts, Incident, IncidentStatus
from bot.outbox import enqueue, job_kind

__all__ = [
    "EXPIRE_SILENCES",
    "INCIDENT_CHANNEL",
    "POSTMORTEM",
    "POST_ROOT",
    "REPLY",
    "UPDATE_ROOT",
    "Notice",
    "alerts_changed",
    "announce",
    "changed",
    "expire_silences",
    "incident_channel",
    "incident_snapshot",
    "postmortem",
    "reply",
    "resolved",
    "update_root",
]

POST_ROOT = job_kind("slack.post_root")
UPDATE_ROOT = job_kind("slack.update_root")
REPLY = job_kind("slack.reply")
POSTMORTEM = job_kind("slack.postmortem")
INCIDENT_CHANNEL = job_kind("slack.incident_channel")
EXPIRE_SILENCES = job_kind("silences.expire")

Message = Mapping[str, Any]  # a chat message already rendered by a flow ({"text", "blocks"})


@dataclass(frozen=True)
class Notice:
    """A thread reply to render at delivery: its kind (a renderer in bot/slack/notices.py) and
    JSON-able arguments. The incident's fields are snapshotted when it is queued, so the reply
    says what was true then, however late it is posted."""

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    alerts: Mapping[str, Sequence[AlertFacts]] = field(default_factory=dict)

    def payload(self, incident: Incident) -> dict[str, Any]:
        return {
            "notice": self.kind,
            "incident": incident_snapshot(incident),
            "args": dict(self.args),
            "alerts": {name: [_alert_snapshot(a) for a in alerts] for name, alerts in self.alerts.items()},
        }


def incident_snapshot(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "key": incident.key,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "started_at": incident.started_at.isoformat() if incident.started_at else None,
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
    }


def _alert_snapshot(alert: AlertFacts) -> dict[str, Any]:
    return {
        "alertname": alert.alertname,
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
    }


def announce(session: Session, incident: Incident, *, routed: bool) -> int:
    """Queue the root message of a newly opened incident, and its own channel when a named
    route (`routed`; which may ask for one) took it: the default route never does, so
    incidents there cost no extra job."""
    enqueue(session, POST_ROOT, incident_id=incident.id, priority=0, dedupe_key=f"root:{incident.id}")
    return 1 + (incident_channel(session, incident) if routed else 0)


def incident_channel(session: Session, incident: Incident) -> int:
    """Ask for the incident's own channel; once per severity, as an escalation may newly
    qualify an incident for one."""
    job = enqueue(
        session,
        INCIDENT_CHANNEL,
        incident_id=incident.id,
        lane="channel",
        priority=3,
        needs_root=True,
        dedupe_key=f"channel:{incident.id}:{incident.severity}",
    )
    return 1 if job is not None else 0


def changed(session: Session, incident: Incident, message: Notice | Message) -> int:
    """A responder changed the incident: re-render the root and tell the thread (and, when the
    change resolved it, end its silences)."""
    count = update_root(session, incident) + reply(session, incident, message)
    if incident.status == IncidentStatus.RESOLVED:
        count += expire_silences(session, incident)
    return count


def postmortem(session: Session, incident: Incident, *, requested_by: str | None) -> int:
    enqueue(
        session,
        POSTMORTEM,
        incident_id=incident.id,
        priority=4,
        needs_root=True,
        payload={"requested_by": requested_by},
    )
    return 1


def update_root(session: Session, incident: Incident) -> int:
    job = enqueue(session, UPDATE_ROOT, incident_id=incident.id, priority=1, needs_root=True, coalesce=True)
    return 1 if job is not None else 0


def reply(
    session: Session, incident: Incident, message: Notice | Message, *, dedupe_key: str | None = None
) -> int:
    payload = message.payload(incident) if isinstance(message, Notice) else {"message": dict(message)}
    job = enqueue(
        session,
        REPLY,
        incident_id=incident.id,
        priority=2,
        needs_root=True,
        payload=payload,
        dedupe_key=dedupe_key,
    )
    return 1 if job is not None else 0


def alerts_changed(
    session: Session, incident: Incident, fired: Sequence[AlertFacts], resolved: Sequence[AlertFacts]
) -> int:
    return update_root(session, incident) + reply(
        session, incident, Notice("alerts_changed", alerts={"fired": fired, "resolved": resolved})
    )


def resolved(session: Session, incident: Incident) -> int:
    return (
        update_root(session, incident)
        + reply(
            session,
            incident,
            Notice("incident_resolved", {"by": incident.resolved_by, "reason": incident.resolve_reason}),
        )
        + expire_silences(session, incident)
    )


_ACTIONS = table("actions", column("id"), column("incident_id"), column("kind"), column("status"))


def expire_silences(session: Session, incident: Incident) -> int:
    """When the incident has silences the bot made, queue ending them (once per resolution).

    The action records are read by table name: the incident domain does not import the actions
    package (which builds on it); bot/actions/models.py owns that table and its columns."""
    has_silences = session.exec(
        select(_ACTIONS.c.id).where(
            _ACTIONS.c.incident_id == incident.id,
            _ACTIONS.c.kind == "silence",
            _ACTIONS.c.status == "succeeded",
        )
    ).first()
    if has_silences is None:
        return 0
    stamp = incident.resolved_at.isoformat() if incident.resolved_at else "open"
    job = enqueue(
        session,
        EXPIRE_SILENCES,
        incident_id=incident.id,
        lane="silences",
        priority=3,
        dedupe_key=f"{EXPIRE_SILENCES}:{incident.id}:{stamp}",
    )
    return 1 if job is not None else 0
