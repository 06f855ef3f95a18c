"""Posts in an incident's thread that must appear once per outbox job, however often the job
runs: a retried job first looks for the marker its earlier attempt may have posted with
(`SlackChat.post_once`). Shared by the enrichment and model-registry flows."""

from __future__ import annotations

import re
from typing import Any

from bot.incidents.models import Incident
from bot.outbox import ClaimedJob
from bot.slack.chat import SlackChat
from bot.text import truncate

__all__ = ["post_in_thread", "say_in_thread", "slug"]


def slug(text: str, default: str) -> str:
    """`text` as a short lowercase identifier (for markers and file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or default


async def post_in_thread(
    chat: SlackChat, job: ClaimedJob, incident: Incident, message: dict[str, Any], part: dict[str, str]
) -> None:
    """`message` in the incident's thread, marked with `part` to tell it from the job's others."""
    assert incident.channel
    assert incident.slack_ts
    await chat.post_once(
        incident.channel,
        message,
        marker={"incident": incident.key, "job": job.id, **part},
        retried=job.attempts > 1,
        thread_ts=incident.slack_ts,
    )


async def say_in_thread(chat: SlackChat, job: ClaimedJob, incident: Incident, text: str) -> None:
    """A short mrkdwn note in the incident's thread."""
    message = {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}],
    }
    await post_in_thread(chat, job, incident, message, {"note": slug(text[:40], "note")})
