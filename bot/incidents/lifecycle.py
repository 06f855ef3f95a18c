"""What responders do to an incident: acknowledge, resolve, take or hand over command, set the
severity, add a note. Store-level functions given a session; the caller owns the transaction.

Each change, in that one transaction: the incident row, a timeline event with the actor's
Slack user ID and name, and the outbox jobs that tell Slack (root message re-rendered, a
reply in its thread). Nothing here talks to Slack, so a Slack outage never loses a change.

Repeating a change that already happened (a second click on Acknowledge, a resolve of a
resolved incident) is not an error: it returns `changed=False` with a friendly message saying
who did it and when, and records nothing. A change that cannot apply any more (acknowledging
a resolved incident) raises `Conflict` with a message such as "INC-7 is already resolved".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from bot.db import utcnow
from bot.errors import Conflict
from bot.incidents import jobs, store
from bot.incidents.jobs import Notice
from bot.incidents.models import AlertStatus, Incident, IncidentStatus, Severity
from bot.text import mention, slack_date

__all__ = [
    "Actor",
    "Outcome",
    "acknowledge",
    "add_note",
    "assign",
    "mitigate",
    "resolve",
    "set_severity",
    "take_command",
]


@dataclass(frozen=True)
class Actor:
    """Who did it: a Slack user ID, and the name Slack sent with the request (for logs, the
    API and the postmortem; Slack itself renders `<@ID>` with the current name)."""

    id: str
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass
class Outcome:
    incident: Incident
    changed: bool
    message: str  # mrkdwn for the person who asked
    first_ack: bool = False
    resolved: bool = False
    jobs: int = 0


def _resolved_already(incident: Incident) -> str:
    by = f" by {mention(incident.resolved_by)}" if incident.resolved_by else " (its alerts resolved)"
    when = f" {slack_date(incident.resolved_at)}" if incident.resolved_at else ""
    return f"{incident.key} is already resolved{by}{when}"


def _open(session: Session, incident_id: int, doing: str) -> Incident:
    incident = store.get_incident(session, incident_id, for_update=True)
    if incident.status == IncidentStatus.RESOLVED:
        raise Conflict(f"{_resolved_already(incident)}; there is nothing to {doing}.")
    return incident


def acknowledge(session: Session, incident_id: int, actor: Actor) -> Outcome:
    incident = _open(session, incident_id, "acknowledge")
    if incident.acknowledged_at is not None or incident.status != IncidentStatus.TRIGGERED:
        who = f" by {mention(incident.acknowledged_by)}" if incident.acknowledged_by else ""
        when = f" {slack_date(incident.acknowledged_at)}" if incident.acknowledged_at else ""
        return Outcome(incident, False, f"{incident.key} was already acknowledged{who}{when}.")
    incident.status = IncidentStatus.ACKNOWLEDGED
    incident.acknowledged_at = utcnow()
    incident.acknowledged_by = actor.id
    store.add_event(
        session,
        incident,
        "acknowledged",
        f"Acknowledged by {actor.label}",
        actor=actor.id,
        actor_name=actor.name,
    )
    count = jobs.changed(session, incident, Notice("acknowledged", {"by": actor.id}))
    return Outcome(incident, True, f"You acknowledged {incident.key}.", first_ack=True, jobs=count)


def mitigate(session: Session, incident_id: int, actor: Actor | None, *, note: str | None = None) -> Outcome:
    """The impact is over (a rollback worked, traffic was shifted) but the incident is not
    resolved: alerts may still need to clear, or a proper fix to land. `actor` None is the
    bot itself, after an action it ran was seen to work."""
    incident = _open(session, incident_id, "mitigate")
    if incident.status == IncidentStatus.MITIGATED:
        return Outcome(incident, False, f"{incident.key} is already mitigated.")
    first_ack = incident.acknowledged_at is None
    incident.status = IncidentStatus.MITIGATED
    if first_ack and actor is not None:
        # Mitigating is working on it: it counts as the acknowledgement if none came first.
        incident.acknowledged_at, incident.acknowledged_by = utcnow(), actor.id
    who = actor.label if actor is not None else "incident-bot"
    text = f"Mitigated by {who}" + (f": {note}" if note else "")
    store.add_event(
        session,
        incident,
        "mitigated",
        text,
        actor=actor.id if actor else None,
        actor_name=actor.name if actor else None,
        data={"note": note},
    )
    count = jobs.changed(
        session, incident, Notice("mitigated", {"by": actor.id if actor else None, "note": note})
    )
    return Outcome(
        incident,
        True,
        f"You marked {incident.key} mitigated.",
        first_ack=first_ack and actor is not None,
        jobs=count,
    )


def resolve(session: Session, incident_id: int, actor: Actor, *, reason: str | None = None) -> Outcome:
    """Resolve by hand, allowed while alerts still fire: recorded and shown as such. The
    incident stops being the group's open one, so an alert that fires again later (a new
    startsAt) opens a new incident, while resends of the same firing change nothing."""
    incident = store.get_incident(session, incident_id, for_update=True)
    if incident.status == IncidentStatus.RESOLVED:
        return Outcome(incident, False, f"{_resolved_already(incident)}.")
    assert incident.id is not None
    firing = sum(1 for a in store.alerts_of(session, incident.id) if a.status == AlertStatus.FIRING)
    incident.status = IncidentStatus.RESOLVED
    incident.resolved_at = utcnow()
    incident.resolved_by = actor.id
    incident.resolve_reason = reason
    incident.manual_resolve = True
    incident.open_key = None
    text = f"Resolved by {actor.label}"
    if firing:
        text += f" while {firing} alert{'s' if firing != 1 else ''} still fired"
    if reason:
        text += f": {reason}"
    store.add_event(
        session,
        incident,
        "resolved",
        text,
        actor=actor.id,
        actor_name=actor.name,
        data={"manual": True, "firing": firing, "reason": reason},
    )
    count = jobs.changed(
        session, incident, Notice("resolved_by_hand", {"by": actor.id, "reason": reason, "firing": firing})
    )
    message = f"You resolved {incident.key}."
    if firing:
        message += (
            f" {firing} alert{'s' if firing != 1 else ''} still firing; a new firing opens a new incident."
        )
    return Outcome(incident, True, message, resolved=True, jobs=count)


def assign(session: Session, incident_id: int, actor: Actor, commander: Actor) -> Outcome:
    """Make `commander` the incident commander (a hand-over replaces the previous one)."""
    incident = _open(session, incident_id, "command")
    if incident.commander_id == commander.id:
        who = "You are" if commander.id == actor.id else f"{mention(commander.id)} is"
        return Outcome(incident, False, f"{who} already the commander of {incident.key}.")
    previous = incident.commander_id
    incident.commander_id = commander.id
    incident.commander_name = commander.name
    if commander.id == actor.id:
        text = f"{actor.label} took command"
    else:
        text = f"{actor.label} made {commander.label} the incident commander"
    store.add_event(
        session,
        incident,
        "assigned",
        text,
        actor=actor.id,
        actor_name=actor.name,
        data={"commander": commander.id, "commander_name": commander.name, "previous": previous},
    )
    count = jobs.changed(
        session,
        incident,
        Notice("assigned", {"by": actor.id, "commander": commander.id, "previous": previous}),
    )
    message = (
        f"You are now the commander of {incident.key}."
        if commander.id == actor.id
        else f"{mention(commander.id)} is now the commander of {incident.key}."
    )
    return Outcome(incident, True, message, jobs=count)


def take_command(session: Session, incident_id: int, actor: Actor) -> Outcome:
    """The "Take command" button: never silently takes over from someone else (two people
    clicking at once, or a stale message); a hand-over is an explicit `/incident assign`."""
    incident = _open(session, incident_id, "command")
    if incident.commander_id and incident.commander_id != actor.id:
        return Outcome(
            incident,
            False,
            f"{mention(incident.commander_id)} already has command of {incident.key}. "
            f"To take over, use `/incident assign {incident.key} @you`.",
        )
    return assign(session, incident_id, actor, actor)


def set_severity(session: Session, incident_id: int, actor: Actor, severity: Severity) -> Outcome:
    """Set by hand, and kept: from now on the alerts no longer move it (`severity_manual`).
    Allowed after resolution too, so the record and the postmortem can be corrected."""
    incident = store.get_incident(session, incident_id, for_update=True)
    if incident.severity == severity.value:
        return Outcome(incident, False, f"{incident.key} is already {severity.value}.")
    old = incident.severity
    incident.severity = severity.value
    incident.severity_manual = True
    store.add_event(
        session,
        incident,
        "severity",
        f"Severity changed from {old} to {severity.value} by {actor.label}",
        actor=actor.id,
        actor_name=actor.name,
        data={"from": old, "to": severity.value, "manual": True},
    )
    count = jobs.changed(session, incident, Notice("severity_changed", {"by": actor.id, "old": old}))
    if incident.status != IncidentStatus.RESOLVED and incident.incident_channel is None:
        count += jobs.incident_channel(session, incident)
    return Outcome(incident, True, f"{incident.key} is now {severity.value}.", jobs=count)


def add_note(session: Session, incident_id: int, actor: Actor, text: str) -> Outcome:
    """Notes are welcome at any time, after resolution too (what was learned)."""
    incident = store.get_incident(session, incident_id, for_update=True)
    store.add_event(session, incident, "note", text, actor=actor.id, actor_name=actor.name)
    count = jobs.reply(session, incident, Notice("note_added", {"by": actor.id, "text": text}))
    return Outcome(incident, True, f"Note added to {incident.key}.", jobs=count)
