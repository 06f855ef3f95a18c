"""The App Home tab: open incidents with status, severity, age and commander, each with an
"Open" button, and the modal that button opens. Pure functions to Slack view payloads.

A Home tab holds at most 100 blocks; with a header, a context line and two blocks per
incident we show the newest HOME_LIMIT and say how many more there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.incidents.models import Alert, Incident
from bot.slack.blocks import ActionId
from bot.slack.replies import incident_line, incident_summary
from bot.text import defuse, truncate

__all__ = ["HOME_LIMIT", "home_view", "incident_modal"]

HOME_LIMIT = 40


def _button(incident: Incident) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": "Open", "emoji": True},
        "action_id": ActionId.OPEN_INCIDENT.value,
        "value": str(incident.id),
    }


def home_view(incidents: Sequence[Incident], *, total: int, now: datetime | None = None) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Open incidents", "emoji": True}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{total} open, newest first. `/incident help` lists what you can do.",
                }
            ],
        },
        {"type": "divider"},
    ]
    if not incidents:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": ":sparkles: No open incidents."}}
        )
    for incident in incidents[:HOME_LIMIT]:
        blocks.append(
            {
                "type": "section",
                "block_id": f"home:{incident.id}",
                "text": {"type": "mrkdwn", "text": truncate(incident_line(incident, now), 3000)},
                "accessory": _button(incident),
            }
        )
    if total > HOME_LIMIT:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"… and {total - HOME_LIMIT} older ones (`/incident list`)."}
                ],
            }
        )
    return {"type": "home", "callback_id": "incident_home", "blocks": blocks[:100]}


def incident_modal(
    incident: Incident, alerts: Sequence[Alert], *, permalink: str | None, now: datetime | None = None
) -> dict[str, Any]:
    summary = incident_summary(incident, alerts, permalink=permalink, now=now)
    return {
        "type": "modal",
        "callback_id": "incident_details",
        "private_metadata": str(incident.id),
        "title": {"type": "plain_text", "text": truncate(defuse(incident.key), 24), "emoji": True},
        "close": {"type": "plain_text", "text": "Close", "emoji": True},
        "blocks": summary["blocks"][:100],
    }
