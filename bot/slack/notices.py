"""Thread replies that tell an incident's channel what a responder changed.

Pure functions from incident state to a Slack message. The domain queues a `Notice` (its kind,
its arguments and a snapshot of the incident, bot/incidents/jobs.py); `render` turns the stored
notice into a message when the outbox delivers it (in order, even after a Slack outage). Everything typed by a
person is escaped for mrkdwn here and cut to Slack's limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bot.errors import ConfigError
from bot.incidents.models import Alert, Incident, Severity
from bot.slack import blocks
from bot.slack.blocks import SEVERITY_EMOJI, Message
from bot.text import bold, escape, mention, truncate

__all__ = [
    "acknowledged",
    "assigned",
    "channel_created",
    "mention",
    "note_added",
    "render",
    "resolved_by_hand",
    "severity_changed",
]

SECTION_TEXT = 3000


def _message(fallback: str, text: str) -> Message:
    return {
        "text": truncate(escape(fallback), 3000),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}}],
    }


def _quote(text: str, limit: int = 1500) -> str:
    return "\n".join(f">{line}" for line in escape(truncate(text, limit)).splitlines() or [""])


def acknowledged(incident: Incident, by: str) -> Message:
    return _message(
        f"{incident.key} acknowledged",
        f":eyes: *{incident.key} acknowledged* by {mention(by)}.",
    )


def mitigated(incident: Incident, by: str | None, note: str | None) -> Message:
    who = f" by {mention(by)}" if by else ""
    text = f":adhesive_bandage: *{incident.key} mitigated*{who}: the impact is over, the incident stays open."
    if note:
        text += f"\n{_quote(note, 1000)}"
    return _message(f"{incident.key} mitigated", text)


def assigned(incident: Incident, by: str, commander: str, previous: str | None) -> Message:
    if by == commander:
        text = f":male-firefighter: {mention(commander)} *took command* of {incident.key}."
    else:
        text = (
            f":male-firefighter: {mention(by)} made {mention(commander)} "
            f"*incident commander* of {incident.key}."
        )
    if previous and previous != commander:
        text += f" (Before: {mention(previous)}.)"
    return _message(f"{incident.key}: new incident commander", text)


def severity_changed(incident: Incident, by: str, old: str) -> Message:
    try:
        emoji = SEVERITY_EMOJI[Severity(incident.severity)]
    except ValueError:
        emoji = ""
    return _message(
        f"{incident.key} severity is now {incident.severity}",
        f"{emoji} {mention(by)} changed the severity of {incident.key} from {bold(old)} "
        f"to {bold(incident.severity)}. It stays there whatever the alerts say.",
    )


def note_added(incident: Incident, by: str, text: str) -> Message:
    return _message(
        f"{incident.key}: note",
        f":memo: Note from {mention(by)}:\n{_quote(text)}",
    )


def resolved_by_hand(incident: Incident, by: str, reason: str | None, firing: int) -> Message:
    text = f":white_check_mark: *{incident.key} resolved* by {mention(by)}"
    text += f"{_duration(incident)}."
    if firing:
        plural = "s are" if firing != 1 else " is"
        text += (
            f"\n:warning: {firing} alert{plural} still firing. If it fires again later, a new incident opens."
        )
    if reason:
        text += f"\n{_quote(reason, 1000)}"
    return _message(f"{incident.key} resolved", text)


def channel_created(incident: Incident, channel_id: str) -> Message:
    return _message(
        f"{incident.key}: incident channel created",
        f":speech_balloon: {incident.key} has its own channel: <#{channel_id}>.",
    )


def _duration(incident: Incident) -> str:
    if incident.resolved_at is None:
        return ""
    minutes = int((incident.resolved_at - incident.started_at).total_seconds() // 60)
    return f" after {minutes // 60}h {minutes % 60}m" if minutes >= 60 else f" after {minutes}m"


def _alerts_changed(incident: Incident, *, fired: list[Alert], resolved: list[Alert]) -> Message:
    return blocks.alerts_changed_message(incident, fired, resolved)


def _incident_resolved(incident: Incident, *, by: str | None, reason: str | None) -> Message:
    return blocks.incident_resolved_message(incident, by=by, reason=reason)


RENDERERS: dict[str, Callable[..., Message]] = {
    "acknowledged": acknowledged,
    "mitigated": mitigated,
    "assigned": assigned,
    "severity_changed": severity_changed,
    "note_added": note_added,
    "resolved_by_hand": resolved_by_hand,
    "alerts_changed": _alerts_changed,
    "incident_resolved": _incident_resolved,
}


def render(payload: Mapping[str, Any]) -> Message:
    """The message of a stored reply job: a ready message, or a notice rendered now from the
    incident snapshot taken when it was queued."""
    if "message" in payload:
        return dict(payload["message"])
    kind = payload["notice"]
    renderer = RENDERERS.get(kind)
    if renderer is None:
        raise ConfigError(f"no renderer for the notice kind {kind!r} (bot/slack/notices.py)")
    snap = payload["incident"]
    # Transient rows (never added to a session) carrying just what the renderers read.
    incident = Incident.model_construct(
        id=snap.get("id"),
        title=snap.get("title") or "",
        severity=snap["severity"],
        status=snap["status"],
        started_at=datetime.fromisoformat(snap["started_at"]),
        resolved_at=_when(snap.get("resolved_at")),
    )
    alerts = {
        name: [
            Alert.model_construct(
                alertname=a.get("alertname"),
                status=a["status"],
                labels=a.get("labels") or {},
                annotations=a.get("annotations") or {},
            )
            for a in listed
        ]
        for name, listed in (payload.get("alerts") or {}).items()
    }
    return renderer(incident, **(payload.get("args") or {}), **alerts)


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
