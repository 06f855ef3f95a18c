"""Outbox handler that puts the postmortem draft in the incident's thread, as a Markdown file.

Why a file and not a message: Slack's mrkdwn is not Markdown, so the draft rendered into a
message would lose its headings and tables, and a long timeline runs into Slack's block and
message limits. A `.md` file keeps the exact Markdown the API returns
(`GET /api/incidents/{id}/postmortem`), ready to paste into the team's docs, and Slack
previews it in the thread.

The draft is rendered when the job runs (current state, not the state when it was asked
for). files_upload_v2 cannot carry a metadata marker, so a retry first looks in the thread for
the file name, which contains the job id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
from sqlalchemy.engine import Engine

from bot.db import transaction
from bot.errors import NotFound
from bot.incidents import jobs, postmortem
from bot.incidents.models import Incident
from bot.outbox import ClaimedJob, Handler
from bot.slack.chat import SlackChat

__all__ = ["PostmortemPoster"]

logger = logging.getLogger(__name__)


@dataclass
class PostmortemPoster:
    engine: Engine
    chat: SlackChat

    def handlers(self) -> dict[str, Handler]:
        return {jobs.POSTMORTEM: self.post}

    def _render(self, incident_id: int | None) -> tuple[Incident, str]:
        if incident_id is None:
            raise NotFound("job has no incident")
        with transaction(self.engine) as session:
            return postmortem.load_and_render(session, incident_id)

    async def post(self, job: ClaimedJob) -> None:
        incident, markdown = await anyio.to_thread.run_sync(self._render, job.incident_id)
        if not (incident.channel and incident.slack_ts):
            return
        filename = f"{incident.key}-postmortem-draft-{job.id}.md"
        if job.attempts > 1 and await self.chat.has_file(incident.channel, incident.slack_ts, filename):
            return
        requested = job.payload.get("requested_by")
        comment = f":memo: Postmortem draft for *{incident.key}*" + (
            f", asked for by <@{requested}>" if requested else ""
        )
        comment += ". Root cause, contributing factors and follow-ups are left for you to fill in."
        await self.chat.upload(
            incident.channel,
            incident.slack_ts,
            content=markdown,
            filename=filename,
            title=f"{incident.key} postmortem draft",
            initial_comment=comment,
            snippet_type="markdown",
        )
