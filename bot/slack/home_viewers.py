"""Who has the App Home open (recently opened it), so a change to an incident the Home lists
can be published to them: Slack has no "refresh" of its own, and a Home shows what the last
views.publish said until someone publishes again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy.engine import Engine
from sqlmodel import Column, Field, Session, SQLModel, col, func, select

from bot.db import UTCDateTime, reading, transaction, utcnow
from bot.errors import UpstreamError
from bot.incidents import store
from bot.incidents.models import Incident, IncidentStatus
from bot.slack.chat import SlackChat
from bot.slack.home import HOME_LIMIT, home_view

__all__ = ["RECENT", "HomeRefresh", "HomeViewer", "open_incidents", "recent_viewers", "remember_viewer"]

logger = logging.getLogger(__name__)

# A Home opened longer ago than this is not refreshed any more (its next opening publishes).
RECENT = timedelta(days=7)
# At most this many Homes refreshed per change, most recent first: views.publish is paced by Slack.
MAX_REFRESH = 50


class HomeViewer(SQLModel, table=True):
    __tablename__ = "home_viewers"

    user_id: str = Field(primary_key=True)
    opened_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def remember_viewer(engine: Engine, user_id: str) -> None:
    with transaction(engine) as session:
        viewer = session.get(HomeViewer, user_id)
        if viewer is None:
            session.add(HomeViewer(user_id=user_id, opened_at=utcnow()))
        else:
            viewer.opened_at = utcnow()
            session.add(viewer)


def recent_viewers(session: Session, now: datetime | None = None) -> list[str]:
    since = (now or utcnow()) - RECENT
    rows = session.exec(
        select(HomeViewer.user_id)
        .where(col(HomeViewer.opened_at) >= since)
        .order_by(col(HomeViewer.opened_at).desc())
        .limit(MAX_REFRESH)
    ).all()
    return list(rows)


def open_incidents(session: Session, limit: int) -> tuple[list[Incident], int]:
    rows = list(store.list_incidents(session, open_only=True, limit=limit))
    total = session.exec(
        select(func.count(col(Incident.id))).where(Incident.status != IncidentStatus.RESOLVED)
    ).one()
    return rows, int(total)


@dataclass
class HomeRefresh:
    """Publish the App Home again to everyone who opened it recently. Called by the delivery
    handlers after an incident's root message was posted or updated (every change to an
    incident updates its root), so the Home lists what the channel shows. Best effort: a
    failure is logged and the next change or opening publishes again."""

    engine: Engine
    chat: SlackChat

    async def __call__(self) -> None:
        def read() -> tuple[list[str], list[Incident], int]:
            with reading(self.engine) as session:
                viewers = recent_viewers(session)
                if not viewers:
                    return [], [], 0
                incidents, total = open_incidents(session, HOME_LIMIT)
                return viewers, incidents, total

        viewers, incidents, total = await anyio.to_thread.run_sync(read)
        if not viewers:
            return
        view = home_view(incidents, total=total)
        for user_id in viewers:
            try:
                await self.chat.publish_view(user_id, view)
            except UpstreamError as exc:
                logger.warning(
                    "could not refresh the App Home", extra={"slack_user": user_id, "error": str(exc)}
                )
