"""The outbox jobs an incident change causes, in one place, so every flow (alerts, slash
commands, buttons) tells Slack the same way.

Kinds and lanes:
- `slack.post_root`   lane slack, priority 0: the incident's one root message.
- `slack.update_root` lane slack, priority 1, coalesced: re-render the root from current state.
- `slack.reply`       lane slack, priority 2: a thread reply, rendered when the change happened.
Thread jobs wait for the root message (`needs_root`), and the lane keeps them in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from bot.incidents.models import Alert, Incident
from bot.outbox import enqueue
from bot.slack import blocks

__all__ = [
    "POST_ROOT",
    "REPLY",
    "UPDATE_ROOT",
    "alerts_changed",
    "announce",
    "reply",
    "resolved",
    "update_root",
]

POST_ROOT = "slack.post_root"
UPDATE_ROOT = "slack.update_root"
REPLY = "slack.reply"


def announce(session: Session, incident: Incident) -> int:
    enqueue(session, POST_ROOT, incident_id=incident.id, priority=0, dedupe_key=f"root:{incident.id}")
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
    return update_root(session, incident) + reply(
        session,
        incident,
        blocks.incident_resolved_message(incident, by=incident.resolved_by, reason=incident.resolve_reason),
    )
