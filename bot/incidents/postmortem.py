"""The postmortem draft: a Markdown document rendered from `bot/templates/postmortem.md.j2`.

The template is a file in the repository so a team can change the headings to its own
postmortem format without touching code. It runs in Jinja2's immutable sandbox with
StrictUndefined (a typo in the template fails loudly in tests, not silently in a review), and
gets only plain values, never database objects. Alert labels, annotations and typed notes are
escaped for Markdown by the `md` filter, so a label such as `*` or `|` cannot break the
document or its tables.

Template context:
    incident   key, title, status, severity, severity_label, service, description, commander,
               channel, incident_channel, runbook, manual_resolve, firing_at_resolution,
               resolved_by, resolve_reason
    window     started, detected, acknowledged, resolved (None: not yet), duration,
               time_to_ack, ongoing
    alerts     [{name, status, labels: [(name, value)], started, ended, summary}]
    timeline   [{at, kind, actor, text}]  every event, oldest first
    actions    the responders' part of the timeline (see ACTION_KINDS)
    truncated_alerts, generated_at
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlmodel import Session

from bot.db import utcnow
from bot.incidents import store
from bot.incidents.models import Alert, Incident, IncidentStatus, TimelineEvent
from bot.incidents.rules import key_labels

__all__ = ["ACTION_KINDS", "TEMPLATE", "load_and_render", "render_postmortem"]

TEMPLATE = "postmortem.md.j2"

# What responders did, as opposed to what the alerts did: the "actions taken" section. Kinds
# starting with "action" are remediation actions (rollback, scale, restart, silence) recorded
# by bot/actions.
ACTION_KINDS = frozenset({"acknowledged", "assigned", "severity", "resolved", "note", "incident_channel"})

_MD_SPECIALS = re.compile(r"([\\`*_\[\]<>|#])")


def md(value: object) -> str:
    """Escape text for inline Markdown (and table cells): the characters that start
    emphasis, code, links, HTML or a cell boundary."""
    return _MD_SPECIALS.sub(r"\\\1", str(value))


def code(value: object) -> str:
    """For inside `backticks`: a backtick would end the span, a pipe a table cell."""
    return str(value).replace("`", "'").replace("|", "¦")


def _when(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None


def _span(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@lru_cache(maxsize=1)
def _template() -> Template:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, trim_blocks=False
    )
    env.filters["md"] = md
    env.filters["code"] = code
    source = resources.files("bot.templates").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(source)


def _summary(alert: Alert) -> str | None:
    text = (alert.annotations.get("summary") or alert.annotations.get("description") or "").strip()
    return text.splitlines()[0] if text else None


def _is_action(event: TimelineEvent) -> bool:
    if event.kind.startswith("action"):
        return True
    if event.kind not in ACTION_KINDS:
        return False
    # An alert-driven severity change or resolution is not a responder action.
    return event.actor is not None or event.kind == "incident_channel"


def _event(event: TimelineEvent) -> dict[str, Any]:
    actor = None
    if event.actor:
        actor = f"{event.actor_name} ({event.actor})" if event.actor_name else event.actor
    return {"at": _when(event.at), "kind": event.kind, "actor": actor, "text": event.text}


def render_postmortem(
    incident: Incident,
    alerts: Sequence[Alert],
    timeline: Sequence[TimelineEvent],
    *,
    now: datetime | None = None,
) -> str:
    now = now or utcnow()
    end = incident.resolved_at
    ongoing = incident.status != IncidentStatus.RESOLVED or end is None
    commander = None
    if incident.commander_id:
        commander = (
            f"{incident.commander_name} ({incident.commander_id})"
            if incident.commander_name
            else incident.commander_id
        )
    resolved_by = None
    firing_at_resolution = 0
    for event in timeline:
        if event.kind == "resolved" and event.data.get("manual"):
            firing_at_resolution = int(event.data.get("firing") or 0)
            if event.actor:
                resolved_by = f"{event.actor_name} ({event.actor})" if event.actor_name else event.actor
    context: dict[str, Any] = {
        "incident": {
            "key": incident.key,
            "title": incident.title,
            "status": incident.status,
            "severity": incident.severity,
            "severity_label": incident.severity_label,
            "service": incident.service,
            "description": incident.description,
            "commander": commander,
            "channel": incident.channel,
            "incident_channel": incident.incident_channel,
            "runbook": incident.runbook_name,
            "manual_resolve": incident.manual_resolve,
            "firing_at_resolution": firing_at_resolution,
            "resolved_by": resolved_by or (incident.resolved_by if incident.manual_resolve else None),
            "resolve_reason": incident.resolve_reason,
        },
        "window": {
            "started": _when(incident.started_at),
            "detected": _when(incident.created_at),
            "acknowledged": _when(incident.acknowledged_at),
            "resolved": None if ongoing else _when(end),
            "duration": _span(((end if not ongoing and end else now) - incident.started_at).total_seconds()),
            "time_to_ack": _span((incident.acknowledged_at - incident.created_at).total_seconds())
            if incident.acknowledged_at
            else None,
            "ongoing": ongoing,
        },
        "alerts": [
            {
                "name": alert.alertname or alert.fingerprint,
                "status": alert.status,
                "labels": key_labels(alert.labels),
                "started": _when(alert.starts_at),
                "ended": _when(alert.ends_at) if alert.status == "resolved" else None,
                "summary": _summary(alert),
            }
            for alert in alerts
        ],
        "timeline": [_event(e) for e in timeline],
        "actions": [_event(e) for e in timeline if _is_action(e)],
        "truncated_alerts": incident.truncated_alerts,
        "generated_at": now.strftime("%Y-%m-%d %H:%M UTC"),
    }
    return _template().render(context)


def load_and_render(session: Session, ref: str | int, *, now: datetime | None = None) -> tuple[Incident, str]:
    """The incident (by number or key) and its postmortem draft; NotFound if there is none."""
    incident = store.get_incident(session, ref)
    assert incident.id is not None
    return incident, render_postmortem(
        incident, store.alerts_of(session, incident.id), store.timeline_of(session, incident.id), now=now
    )
