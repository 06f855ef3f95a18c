"""Outbox handlers that put incidents in Slack: the root message, its updates, thread replies.

Each handler is idempotent for the window the outbox cannot close (the job ran, but recording
that failed, or Slack's answer was lost): the root is posted only while the incident has no
`ts`, and a retried post first looks for the message an earlier attempt may have left, by the
metadata marker every message carries. That is what keeps root messages from duplicating when
a retry follows a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from sqlalchemy.engine import Engine

from bot import storm
from bot.db import transaction
from bot.errors import ConfigError, PermanentUpstreamError
from bot.incidents import jobs, store
from bot.incidents.models import Alert, Incident
from bot.outbox import ClaimedJob, Handler, Reschedule, fail_waiting_for_root
from bot.slack import blocks, notices
from bot.slack.chat import SlackChat

__all__ = ["SlackDelivery"]

logger = logging.getLogger(__name__)

# A lost answer can only hide a post made after the job was created; look a little further
# back for clock skew between us and Slack.
LOOKBACK_SECONDS = 120


@dataclass
class SlackDelivery:
    engine: Engine
    chat: SlackChat
    public_url: str | None = None
    interactive: bool = True
    refresh_home: Callable[[], Awaitable[None]] | None = None  # App Homes listing incidents

    def handlers(self) -> dict[str, Handler]:
        return {jobs.POST_ROOT: self.post_root, jobs.UPDATE_ROOT: self.update_root, jobs.REPLY: self.reply}

    def render_root(self, incident: Incident, alerts: Sequence[Alert]) -> blocks.Message:
        console = f"{self.public_url.rstrip('/')}/incidents/{incident.id}" if self.public_url else None
        return blocks.root_message(incident, alerts, interactive=self.interactive, console_url=console)

    async def post_root(self, job: ClaimedJob) -> None:
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        if incident.slack_ts:
            return
        if not incident.channel:
            raise ConfigError(
                f"{incident.key} has no Slack channel: set INCIDENT_BOT_CHANNEL or a matching route"
            )
        marker = {"incident": incident.key, "job": job.id}
        ts: str | None = None
        channel = incident.channel
        self._leave_if_channel_busy(channel)
        if job.attempts > 1:
            ts = await self.chat.find_posted(
                channel, marker, oldest=job.created_at.timestamp() - LOOKBACK_SECONDS
            )
        if ts is None:
            try:
                posted = await self.chat.post(
                    channel,
                    self.render_root(incident, alerts),
                    marker=marker,
                    priority=1 if incident.severity == "critical" else 2,
                )
            except PermanentUpstreamError as exc:
                await anyio.to_thread.run_sync(self._note_failure, incident.id, str(exc), True)
                raise
            channel, ts = posted.channel, posted.ts
        assert incident.id is not None
        await anyio.to_thread.run_sync(self._save_root, incident.id, channel, ts)
        await self._refresh_home()

    async def _refresh_home(self) -> None:
        if self.refresh_home is not None:
            await self.refresh_home()

    def _leave_if_channel_busy(self, channel: str) -> None:
        """In a storm, a worker waiting for a busy channel's turn would be a worker that
        cannot post to the idle channels; hand the job back until the channel has room (the
        claim order then still takes critical incidents first)."""
        pacer = self.chat.pacer
        # The same rule the outbox claims by (ChannelPacer.busy); this catches the posts that
        # queued up between the claim and now.
        if channel in pacer.busy():
            raise Reschedule(pacer.queued(channel) * pacer.interval, note=f"channel {channel} busy")

    def _save_root(self, incident_id: int, channel: str, ts: str) -> None:
        with transaction(self.engine) as session:
            incident = store.get_incident(session, incident_id)
            incident.channel, incident.slack_ts = channel, ts
            session.add(incident)
            store.add_event(
                session, incident, "slack_posted", f"Posted to Slack channel {channel}", data={"ts": ts}
            )
            storm.on_root_posted(session, incident)

    def _note_failure(self, incident_id: int | None, error: str, root: bool = False) -> None:
        if incident_id is None:
            return
        with transaction(self.engine) as session:
            incident = store.get_incident(session, incident_id)
            store.add_event(session, incident, "slack_failed", error)
            if root:
                incident.slack_error = error
                session.add(incident)
                fail_waiting_for_root(session, incident_id, f"the root message could not be posted: {error}")

    async def update_root(self, job: ClaimedJob) -> None:
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        if not (incident.channel and incident.slack_ts):
            return
        await self.chat.update(incident.channel, incident.slack_ts, self.render_root(incident, alerts))
        await self._refresh_home()

    async def reply(self, job: ClaimedJob) -> None:
        incident, _ = await anyio.to_thread.run_sync(store.load_with_alerts, self.engine, job.incident_id)
        if not (incident.channel and incident.slack_ts):
            return
        marker = {"incident": incident.key, "job": job.id}
        if job.attempts > 1 and await self.chat.find_posted(
            incident.channel,
            marker,
            thread_ts=incident.slack_ts,
            oldest=job.created_at.timestamp() - LOOKBACK_SECONDS,
        ):
            return
        try:
            await self.chat.post(
                incident.channel, notices.render(job.payload), thread_ts=incident.slack_ts, marker=marker
            )
        except PermanentUpstreamError as exc:
            await anyio.to_thread.run_sync(self._note_failure, incident.id, str(exc))
            raise
