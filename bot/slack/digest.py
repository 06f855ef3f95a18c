"""The storm digest in Slack: one message per storm and channel, kept current with
chat.update (bot/storm.py decides when a channel is in a storm and what the digest covers).

Each incident is one line: severity, key, title, and once its own root message is out, a
link to it (`https://slack.com/archives/<channel>/p<ts>`, the permalink form Slack resolves
to the workspace, so no chat.getPermalink call per incident is needed). Critical incidents
first. Slack allows 50 blocks and 3,000 characters per section, so a very long storm shows
its first lines and a count of the rest (bot/storm.py reads only as many as could be shown).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy.engine import Engine

from bot import storm
from bot.db import transaction
from bot.outbox import ClaimedJob, Handler
from bot.slack.chat import SlackChat
from bot.storm import DigestLine, DigestView
from bot.text import escape, truncate

__all__ = ["StormDigestPoster", "digest_message"]

logger = logging.getLogger(__name__)

SECTION_LIMIT = 2900
MAX_SECTIONS = 45
SEVERITY_MARK = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
LOOKBACK_SECONDS = 120


def _line(incident: DigestLine) -> str:
    mark = SEVERITY_MARK.get(incident.severity, ":white_circle:")
    title = escape(truncate(incident.title, 150))
    if incident.slack_ts and incident.channel:
        link = f"https://slack.com/archives/{incident.channel}/p{incident.slack_ts.replace('.', '')}"
        key = f"<{link}|{incident.key}>"
    else:
        key = f"*{incident.key}*"
    return f"{mark} {key} {escape(incident.severity)}: {title}"


def digest_message(view: DigestView) -> dict[str, Any]:
    """`view.lines` come critical first, then in order of opening (bot/storm.py sorts them)."""
    total, critical, posted = view.total, view.critical, view.announced
    headline = (
        f"Alert storm: {total} incidents in this channel ({critical} critical); {posted} of {total} announced"
    )
    if posted == total:
        headline = f"Alert storm: {total} incidents in this channel ({critical} critical), all announced"
    sections: list[str] = []
    current = ""
    shown = 0
    for incident in view.lines:
        line = _line(incident)
        if len(current) + len(line) + 1 > SECTION_LIMIT:
            if len(sections) + 1 >= MAX_SECTIONS:
                break
            sections.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
        shown += 1
    if current:
        sections.append(current)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(headline, 150), "emoji": True}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Each incident's own message follows at Slack's pace, critical first; "
                    "keys become links as they appear.",
                }
            ],
        },
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections]
    if shown < total:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {total - shown} more"}]}
        )
    return {"text": headline, "blocks": blocks}


@dataclass
class StormDigestPoster:
    engine: Engine
    chat: SlackChat

    def handlers(self) -> dict[str, Handler]:
        return {storm.DIGEST: self.refresh}

    def _load(self, digest_id: int) -> tuple[str, str | None, DigestView] | None:
        with transaction(self.engine) as session:
            found = storm.take_refresh(session, digest_id)
            if found is None:
                return None
            digest, view = found
            return digest.channel, digest.ts, view

    def _save(self, digest_id: int, ts: str, all_announced: bool) -> None:
        with transaction(self.engine) as session:
            storm.record_posted(session, digest_id, ts, all_announced=all_announced)

    async def refresh(self, job: ClaimedJob) -> None:
        digest_id = int(job.payload["digest"])
        loaded = await anyio.to_thread.run_sync(self._load, digest_id)
        if loaded is None:
            return
        channel, ts, view = loaded
        message = digest_message(view)
        if ts is None:
            marker = {"digest": digest_id}
            if job.attempts > 1:
                ts = await self.chat.find_posted(
                    channel, marker, oldest=job.created_at.timestamp() - LOOKBACK_SECONDS
                )
            if ts is None:
                ts = (await self.chat.post(channel, message, marker=marker, priority=0)).ts
            else:
                await self.chat.update(channel, ts, message)
        else:
            await self.chat.update(channel, ts, message)
        all_announced = view.announced == view.total
        await anyio.to_thread.run_sync(self._save, digest_id, ts, all_announced)
