"""What the bot answers a person in Slack (ephemeral, where they are): command results,
incident summaries, timelines, usage and error messages. Pure functions to Block Kit.

Limits are Slack's: 50 blocks per message, 3000 characters per section text. Values from
alerts and people are escaped for mrkdwn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.db import utcnow
from bot.incidents.models import Alert, AlertStatus, Incident, IncidentStatus, Severity, TimelineEvent
from bot.slack.blocks import SEVERITY_EMOJI, STATUS_EMOJI, Message, notice, slack_date
from bot.slack.commands import USAGE
from bot.slack.notices import mention
from bot.text import escape, literal, truncate

__all__ = [
    "age",
    "error_message",
    "help_message",
    "incident_line",
    "incident_list",
    "incident_summary",
    "notice",
    "timeline_message",
    "usage_message",
]

SECTION_TEXT = 3000
MAX_BLOCKS = 50
LIST_LIMIT = 25
TIMELINE_LIMIT = 60


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}}


def _message(fallback: str, blocks: list[dict[str, Any]]) -> Message:
    return {"text": truncate(escape(fallback), 3000), "blocks": blocks[:MAX_BLOCKS]}


def age(since: datetime, now: datetime | None = None) -> str:
    seconds = int(max(0, ((now or utcnow()) - since).total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _severity_emoji(incident: Incident) -> str:
    try:
        return SEVERITY_EMOJI[Severity(incident.severity)]
    except ValueError:
        return ""


def _status_emoji(incident: Incident) -> str:
    try:
        return STATUS_EMOJI[IncidentStatus(incident.status)]
    except ValueError:
        return ""


def incident_line(incident: Incident, now: datetime | None = None) -> str:
    """`INC-42 · title` then status, severity, age and commander on one line."""
    commander = mention(incident.commander_id) if incident.commander_id else "_no commander_"
    return (
        f"*{incident.key}* · {literal(truncate(incident.title, 150))}\n"
        f"{_status_emoji(incident)} {incident.status} · {_severity_emoji(incident)} {incident.severity}"
        f" · {age(incident.started_at, now)} old · {commander}"
        + (f" · {literal(incident.service)}" if incident.service else "")
    )


def incident_list(incidents: Sequence[Incident], *, total: int, now: datetime | None = None) -> Message:
    if not incidents:
        return _message("No open incidents", [_section(":sparkles: No open incidents.")])
    blocks = [_section(f"*Open incidents* ({total}), newest first")]
    blocks += [_section(incident_line(i, now)) for i in incidents[:LIST_LIMIT]]
    if total > len(incidents[:LIST_LIMIT]):
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"… and {total - LIST_LIMIT} older ones."}],
            }
        )
    return _message(f"{total} open incident{'s' if total != 1 else ''}", blocks)


def incident_summary(
    incident: Incident, alerts: Sequence[Alert], *, permalink: str | None = None, now: datetime | None = None
) -> Message:
    firing = [a for a in alerts if a.status == AlertStatus.FIRING]
    lines = [
        f"*Status:* {_status_emoji(incident)} {incident.status}"
        + (" (by hand, alerts still firing)" if incident.manual_resolve and firing else ""),
        f"*Severity:* {_severity_emoji(incident)} {incident.severity}"
        + (" (set by hand)" if incident.severity_manual else ""),
        f"*Service:* {literal(incident.service) if incident.service else '_unknown_'}",
        f"*Commander:* {mention(incident.commander_id) if incident.commander_id else '_none yet_'}",
        f"*Started:* {slack_date(incident.started_at)} ({age(incident.started_at, now)} ago)",
    ]
    if incident.acknowledged_at:
        lines.append(
            f"*Acknowledged:* {slack_date(incident.acknowledged_at)}"
            + (f" by {mention(incident.acknowledged_by)}" if incident.acknowledged_by else "")
        )
    if incident.resolved_at:
        lines.append(
            f"*Resolved:* {slack_date(incident.resolved_at)}"
            + (f" by {mention(incident.resolved_by)}" if incident.resolved_by else "")
        )
    if incident.resolve_reason:
        lines.append(f"*Reason:* {literal(truncate(incident.resolve_reason, 500))}")
    lines.append(f"*Alerts:* {len(firing)} firing, {len(alerts) - len(firing)} resolved")
    where = []
    if incident.channel and incident.slack_ts:
        where.append(f"<{permalink}|incident message>" if permalink else f"posted in <#{incident.channel}>")
    if incident.incident_channel:
        where.append(f"channel <#{incident.incident_channel}>")
    if where:
        lines.append("*Slack:* " + ", ".join(where))
    blocks = [
        _section(f"*{incident.key}* · {literal(truncate(incident.title, 200))}"),
        _section("\n".join(lines)),
    ]
    if alerts:
        shown = [
            f"{':red_circle:' if a.status == AlertStatus.FIRING else ':white_check_mark:'} "
            f"{literal(a.alertname or a.fingerprint)} since {slack_date(a.starts_at)}"
            for a in alerts[:10]
        ]
        if len(alerts) > 10:
            shown.append(f"_… and {len(alerts) - 10} more_")
        blocks.append(_section("\n".join(shown)))
    return _message(f"{incident.key}: {incident.status}, {incident.severity}", blocks)


def timeline_message(incident: Incident, events: Sequence[TimelineEvent]) -> Message:
    shown = list(events)[-TIMELINE_LIMIT:]
    lines = []
    for event in shown:
        who = f"{mention(event.actor, event.actor_name)}: " if event.actor else ""
        when = slack_date(event.at, "{date_short_pretty} {time_secs}")
        lines.append(f"{when} · {who}{literal(truncate(event.text, 400))}")
    blocks = [_section(f"*Timeline of {incident.key}* · {literal(truncate(incident.title, 150))}")]
    if len(events) > len(shown):
        blocks.append(_section(f"_{len(events) - len(shown)} earlier events not shown; see the postmortem._"))
    chunk = ""
    for line in lines:
        if len(chunk) + len(line) + 1 > SECTION_TEXT - 10:
            blocks.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        blocks.append(_section(chunk))
    return _message(f"Timeline of {incident.key}: {len(events)} events", blocks)


def help_message() -> Message:
    return _message("/incident help", [_section(USAGE)])


def usage_message(problem: str, usage: str) -> Message:
    return _message(problem, [_section(f":warning: {problem}"), _section(usage)])


def error_message(problem: str) -> Message:
    return _message(problem, [_section(f":warning: {problem}")])
