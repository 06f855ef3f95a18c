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
  made for it (bot/actions/executor.py), so its alerts notify again if they come back.
Thread jobs wait for the root message (`needs_root`), and the lane keeps them in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, select

from bot.actions.models import ActionRecord, ActionStatus
from bot.incidents.models import Alert, Incident, IncidentStatus, TimelineEvent
from bot.outbox import enqueue
from bot.slack import blocks

__all__ = [
    "EXPIRE_SILENCES",
    "INCIDENT_CHANNEL",
    "POSTMORTEM",
    "POST_ROOT",
    "REPLY",
    "UPDATE_ROOT",
    "alerts_changed",
    "announce",
    "changed",
    "expire_silences",
    "incident_channel",
    "postmortem",
    "reply",
    "resolved",
    "update_root",
]

POST_ROOT = "slack.post_root"
UPDATE_ROOT = "slack.update_root"
REPLY = "slack.reply"
POSTMORTEM = "slack.postmortem"
INCIDENT_CHANNEL = "slack.incident_channel"
EXPIRE_SILENCES = "silences.expire"


def announce(session: Session, incident: Incident) -> int:
    enqueue(session, POST_ROOT, incident_id=incident.id, priority=0, dedupe_key=f"root:{incident.id}")
    return 1 + (incident_channel(session, incident) if _routed(session, incident) else 0)


def _routed(session: Session, incident: Incident) -> bool:
    """Whether a named route (which may ask for an incident channel) took the incident; the
    default route never does, so incidents there cost no extra job."""
    opened = session.exec(
        select(TimelineEvent.data).where(
            TimelineEvent.incident_id == incident.id, TimelineEvent.kind == "opened"
        )
    ).first()
    return bool(opened and opened.get("route"))


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


def changed(session: Session, incident: Incident, message: blocks.Message) -> int:
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
    session: Session, incident: Incident, message: blocks.Message, *, dedupe_key: str | None = None
) -> int:
    job = enqueue(
        session,
        REPLY,
        incident_id=incident.id,
        priority=2,
        needs_root=True,
        payload={"message": message},
        dedupe_key=dedupe_key,
    )
    return 1 if job is not None else 0


def alerts_changed(
    session: Session, incident: Incident, fired: Sequence[Alert], resolved: Sequence[Alert]
) -> int:
    return update_root(session, incident) + reply(
        session, incident, blocks.alerts_changed_message(incident, fired, resolved)
    )


def resolved(session: Session, incident: Incident) -> int:
    return (
        update_root(session, incident)
        + reply(
            session,
            incident,
            blocks.incident_resolved_message(
                incident, by=incident.resolved_by, reason=incident.resolve_reason
            ),
        )
        + expire_silences(session, incident)
    )


def expire_silences(session: Session, incident: Incident) -> int:
    """When the incident has silences the bot made, queue ending them (once per resolution)."""
    has_silences = session.exec(
        select(ActionRecord.id).where(
            ActionRecord.incident_id == incident.id,
            ActionRecord.kind == "silence",
            ActionRecord.status == ActionStatus.SUCCEEDED.value,
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
