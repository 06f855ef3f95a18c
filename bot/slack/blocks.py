"""Block Kit for incident messages: pure functions from incident state to Slack payloads.

Every value that came from an alert (labels, annotations, URLs) is escaped for mrkdwn and cut
to Slack's limits here, in one place, so no caller can forget it. Limits are Slack's
(python-slack-sdk's validators): 50 blocks per message, 3000 characters per section text,
10 fields of 2000, 150 for a header, 75 for a button's text, 3000 for its URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from bot.incidents.models import Alert, AlertStatus, Incident, IncidentStatus, Severity
from bot.incidents.rules import key_labels
from bot.text import bold, code, defuse, escape, literal, slack_date, truncate

__all__ = [
    "ActionId",
    "Message",
    "alerts_changed_message",
    "incident_resolved_message",
    "notice",
    "root_message",
    "slack_date",
]

Block = dict[str, Any]

MAX_BLOCKS = 50
SECTION_TEXT = 3000
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
URL_MAX = 3000
ALERT_LINES = 15

SEVERITY_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.INFO: ":large_blue_circle:",
}
STATUS_EMOJI = {
    IncidentStatus.TRIGGERED: ":rotating_light:",
    IncidentStatus.ACKNOWLEDGED: ":eyes:",
    IncidentStatus.MITIGATED: ":adhesive_bandage:",
    IncidentStatus.RESOLVED: ":white_check_mark:",
}


class ActionId(StrEnum):
    """action_ids of the buttons the bot puts on messages; the Slack app listens on these."""

    ACKNOWLEDGE = "incident_ack"
    RESOLVE = "incident_resolve"
    TAKE_COMMAND = "incident_take_command"
    OPEN_INCIDENT = "incident_open"
    RUNBOOK_ACTION = "runbook_action"
    APPROVE = "action_approve"
    CANCEL = "action_cancel"
    LINK = "link"


Message = dict[str, Any]  # {"text": fallback, "blocks": [...]} ready for chat.postMessage


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(defuse(text), limit), "emoji": True}


def _mrkdwn(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def notice(text: str) -> Message:
    """A short mrkdwn answer, already escaped by whoever built it. Here rather than in
    bot/slack/replies.py because the journal applier process queues one (the model owners'
    notice, bot/slack/kpi_owner_notices.py) and need not load the command parser with it."""
    return {"text": truncate(text, 3000), "blocks": [{"type": "section", "text": _mrkdwn(text)}]}


def _safe_url(url: str | None) -> str | None:
    """Only absolute http(s) URLs become buttons; relative generatorURLs (seen in real
    payloads) and other schemes are dropped rather than producing an invalid_blocks error."""
    if not url or len(url) > URL_MAX:
        return None
    return url if url.startswith(("https://", "http://")) else None


def _severity(incident: Incident) -> Severity:
    try:
        return Severity(incident.severity)
    except ValueError:
        return Severity.WARNING


def _status(incident: Incident) -> IncidentStatus:
    try:
        return IncidentStatus(incident.status)
    except ValueError:
        return IncidentStatus.TRIGGERED


def _labels_line(labels: dict[str, str]) -> str:
    return "  ".join(f"`{code(name)}={code(truncate(value, 120))}`" for name, value in key_labels(labels))


def _first_url(alerts: Sequence[Alert], annotation: str) -> str | None:
    for alert in alerts:
        url = _safe_url(alert.annotations.get(annotation))
        if url:
            return url
    return None


def root_message(
    incident: Incident,
    alerts: Sequence[Alert],
    *,
    interactive: bool = True,
    console_url: str | None = None,
) -> Message:
    severity = _severity(incident)
    status = _status(incident)
    firing = sum(1 for a in alerts if a.status == AlertStatus.FIRING)
    resolved = len(alerts) - firing
    severity_text = severity.value.capitalize()
    if incident.severity_label and incident.severity_label.lower() != severity.value:
        severity_text += f" (label `{code(incident.severity_label)}`)"
    status_text = f"{STATUS_EMOJI[status]} {status.value.capitalize()}"
    if status == IncidentStatus.RESOLVED and incident.manual_resolve and firing:
        status_text += " manually, alerts still firing"
    fields = [
        f"*Status*\n{status_text}",
        f"*Severity*\n{SEVERITY_EMOJI[severity]} {severity_text}",
        f"*Service*\n{literal(incident.service) if incident.service else '_unknown_'}",
        f"*Commander*\n{f'<@{incident.commander_id}>' if incident.commander_id else '_none yet_'}",
        f"*Started*\n{slack_date(incident.started_at)}",
        f"*Alerts*\n{firing} firing, {resolved} resolved"
        + (f" (+{incident.truncated_alerts} not shown by Alertmanager)" if incident.truncated_alerts else ""),
    ]
    blocks: list[Block] = [
        {"type": "header", "text": _plain(f"{incident.key} · {incident.title}", HEADER_TEXT)},
        {"type": "section", "fields": [_mrkdwn(f, FIELD_TEXT) for f in fields]},
    ]
    if incident.description:
        blocks.append({"type": "section", "text": _mrkdwn(literal(truncate(incident.description, 1500)))})
    labels_line = _labels_line(incident.common_labels or (alerts[0].labels if alerts else {}))
    if labels_line:
        blocks.append({"type": "context", "elements": [_mrkdwn(labels_line)]})
    if incident.incident_channel:
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(f"Incident channel: <#{incident.incident_channel}>")]}
        )
    elements: list[dict[str, Any]] = []
    if interactive and status != IncidentStatus.RESOLVED:
        if status == IncidentStatus.TRIGGERED:
            elements.append(_button("Acknowledge", ActionId.ACKNOWLEDGE, incident, style="primary"))
        elements.append(_button("Resolve", ActionId.RESOLVE, incident))
        if not incident.commander_id:
            elements.append(_button("Take command", ActionId.TAKE_COMMAND, incident))
    for text, url in (
        ("Alert source", next((u for a in alerts if (u := _safe_url(a.generator_url))), None)),
        (
            "Runbook",
            _first_url(alerts, "runbook_url") or _safe_url(incident.common_annotations.get("runbook_url")),
        ),
        ("Dashboard", _first_url(alerts, "dashboard_url")),
        ("Open in console", _safe_url(console_url)),
    ):
        if url:
            elements.append(
                {
                    "type": "button",
                    "text": _plain(text, BUTTON_TEXT),
                    "url": url,
                    "action_id": f"{ActionId.LINK}_{len(elements)}",
                }
            )
    if elements:
        blocks.append({"type": "actions", "block_id": f"incident:{incident.id}", "elements": elements[:25]})
    fallback = f"{SEVERITY_EMOJI[severity]} [{severity.value.upper()}] {incident.key} {incident.title}"
    if incident.service:
        fallback += f" ({incident.service})"
    if status == IncidentStatus.RESOLVED:
        fallback = f"{STATUS_EMOJI[status]} RESOLVED {fallback}"
    return {"text": truncate(escape(fallback), 3000), "blocks": blocks[:MAX_BLOCKS]}


def _button(text: str, action: ActionId, incident: Incident, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text, BUTTON_TEXT),
        "action_id": action.value,
        "value": str(incident.id),
    }
    if style:
        button["style"] = style
    return button


def _alert_line(alert: Alert) -> str:
    emoji = ":red_circle:" if alert.status == AlertStatus.FIRING else ":white_check_mark:"
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    line = f"{emoji} {bold(alert.alertname or 'alert')}"
    labels = _labels_line(alert.labels)
    if labels:
        line += f"  {labels}"
    if summary:
        line += f"\n      {literal(truncate(summary.splitlines()[0], 300))}"
    return line


def _alert_list(alerts: Sequence[Alert]) -> list[Block]:
    lines = [_alert_line(a) for a in alerts[:ALERT_LINES]]
    if len(alerts) > ALERT_LINES:
        lines.append(f"_… and {len(alerts) - ALERT_LINES} more_")
    blocks: list[Block] = []
    chunk = ""
    for line in lines:
        if len(chunk) + len(line) + 1 > SECTION_TEXT - 10:
            blocks.append({"type": "section", "text": _mrkdwn(chunk)})
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        blocks.append({"type": "section", "text": _mrkdwn(chunk)})
    return blocks


def alerts_changed_message(incident: Incident, fired: Sequence[Alert], resolved: Sequence[Alert]) -> Message:
    """Thread reply telling which alerts of the incident started or stopped firing."""
    parts: list[str] = []
    blocks: list[Block] = []
    if fired:
        head = f"{len(fired)} alert{'s' if len(fired) != 1 else ''} firing"
        parts.append(head)
        blocks.append({"type": "section", "text": _mrkdwn(f"*{head}*")})
        blocks.extend(_alert_list(fired))
    if resolved:
        head = f"{len(resolved)} alert{'s' if len(resolved) != 1 else ''} resolved"
        parts.append(head)
        blocks.append({"type": "section", "text": _mrkdwn(f"*{head}*")})
        blocks.extend(_alert_list(resolved))
    return {"text": f"{incident.key}: " + ", ".join(parts), "blocks": blocks[:MAX_BLOCKS]}


def incident_resolved_message(
    incident: Incident, *, by: str | None = None, reason: str | None = None
) -> Message:
    duration = ""
    if incident.resolved_at:
        minutes = int((incident.resolved_at - incident.started_at).total_seconds() // 60)
        duration = f" after {minutes // 60}h {minutes % 60}m" if minutes >= 60 else f" after {minutes}m"
    who = f" by <@{by}>" if by else " (all alerts resolved)"
    text = f":white_check_mark: *{incident.key} resolved*{who}{duration}."
    if reason:
        text += f"\n>{literal(truncate(reason, 1000))}"
    return {
        "text": f"{incident.key} resolved{duration}",
        "blocks": [{"type": "section", "text": _mrkdwn(text)}],
    }
