"""Posting the KPI digest: the outbox job a claimed schedule point enqueued
(bot/kpis/digest.py) becomes one message with every model's scorecard, SLO breaches first.

A retried job first looks for its message in the channel (by the metadata marker every bot
message carries), so an answer lost after Slack posted it does not post the digest twice.
"""

from __future__ import annotations

import anyio

from bot.kpis.digest import DIGEST_JOB
from bot.kpis.service import KpiService
from bot.kpis.window import Window
from bot.outbox import ClaimedJob, Handler
from bot.slack.chat import SlackChat
from bot.slack.kpi_blocks import digest_message

__all__ = ["DIGEST_BUDGET_SECONDS", "KpiDigestPoster"]

#: A digest is not interactive: Prometheus may take its time (each query has its own timeout).
DIGEST_BUDGET_SECONDS = 30.0


class KpiDigestPoster:
    def __init__(self, kpis: KpiService, chat: SlackChat, channel: str) -> None:
        self.kpis = kpis
        self.chat = chat
        self.channel = channel

    def handlers(self) -> dict[str, Handler]:
        return {DIGEST_JOB: self.post}

    async def post(self, job: ClaimedJob) -> None:
        point = str(job.payload.get("point") or f"job-{job.id}")
        marker = {"kpi_digest": point}
        if job.attempts > 0 and await self.chat.find_posted(
            self.channel, marker, oldest=job.created_at.timestamp() - 60
        ):
            return
        window = Window.parse(str(job.payload.get("window") or "7d"))
        report = await anyio.to_thread.run_sync(
            lambda: self.kpis.report(window, budget=DIGEST_BUDGET_SECONDS), abandon_on_cancel=True
        )
        await self.chat.post(
            self.channel,
            digest_message(report, title="Weekly model KPIs" if window.text == "7d" else "Model KPIs"),
            marker=marker,
        )
