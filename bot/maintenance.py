"""Housekeeping: the tables that only serve a short purpose are pruned, so the database does
not grow with every notification forever.

Kept for good: incidents, their alerts and timelines, and action records (the audit trail).
Pruned after `INCIDENT_BOT_RETENTION_DAYS`: finished outbox jobs (done or failed: what they
did is on the timeline) and the raw notifications (their digests deduplicate resends, which
come within hours, not weeks). Slack request identities only need to outlive Slack's retries
(minutes) and a double click, so a day is plenty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.db import transaction, utcnow
from bot.incidents.models import Notification, SlackRequest
from bot.outbox import JobStatus, OutboxJob

__all__ = ["Pruned", "prune", "prune_periodically"]

logger = logging.getLogger(__name__)

SLACK_REQUEST_RETENTION = timedelta(days=1)
INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class Pruned:
    jobs: int
    notifications: int
    slack_requests: int


def prune(engine: Engine, *, retention: timedelta, now: datetime | None = None) -> Pruned:
    now = now or utcnow()
    cutoff = now - retention
    with transaction(engine) as session:
        connection = session.connection()  # bulk DELETEs: CursorResult carries the row counts
        jobs = connection.execute(
            sa.delete(OutboxJob).where(
                col(OutboxJob.status).in_([JobStatus.DONE, JobStatus.FAILED]),
                col(OutboxJob.finished_at) < cutoff,
            )
        )
        notifications = connection.execute(
            sa.delete(Notification).where(col(Notification.received_at) < cutoff)
        )
        requests = connection.execute(
            sa.delete(SlackRequest).where(col(SlackRequest.received_at) < now - SLACK_REQUEST_RETENTION)
        )
    return Pruned(jobs.rowcount, notifications.rowcount, requests.rowcount)


async def prune_periodically(
    engine: Engine, *, retention: timedelta, interval: float = INTERVAL_SECONDS
) -> None:
    """Prune now and then every `interval` seconds; a failure (database away) is logged and
    tried again next time, never fatal."""
    while True:
        try:
            pruned = await anyio.to_thread.run_sync(lambda: prune(engine, retention=retention))
            if pruned.jobs or pruned.notifications or pruned.slack_requests:
                logger.info(
                    "old records pruned",
                    extra={
                        "jobs": pruned.jobs,
                        "notifications": pruned.notifications,
                        "slack_requests": pruned.slack_requests,
                    },
                )
        except Exception:
            logger.warning("pruning old records failed; will try again", exc_info=True)
        await anyio.sleep(interval)
