"""When a channel is in an alert storm, and what its digest covers.

Slack lets the bot post about one message per second per channel. When incidents open in a
channel faster than that pace can announce them within `STORM_SECONDS`, responders would sit
for minutes watching root messages trickle in with no idea of the size of the storm. So the
channel gets one digest message, kept current in place, listing every incident of the storm
(key, severity, title) and linking each one's root message as it appears; the root messages
still follow at the channel's pace, critical first. This module only decides; the digest is
rendered and posted by bot/slack/digest.py.

A storm starts when the channel's unannounced incidents would take longer than
`STORM_SECONDS` at the pace, and covers every incident of the channel opened since the oldest
of those; it ends once every incident it covers has its root message (the last refresh says
so), and the next storm gets a new digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Column, Field, Session, SQLModel, col, select

from bot.db import UTCDateTime, utcnow
from bot.incidents.models import Incident, Severity
from bot.outbox import enqueue, job_kind

__all__ = [
    "DIGEST",
    "LISTED",
    "STORM_SECONDS",
    "DigestLine",
    "DigestView",
    "StormDigest",
    "covered",
    "on_opened",
    "on_root_posted",
    "record_posted",
    "take_refresh",
]

DIGEST = job_kind("slack.storm_digest")
STORM_SECONDS = 2.0
# Incidents opening and root messages arriving one after another refresh a posted digest at
# most this often.
REFRESH_SECONDS = 2.0
# Incidents a refresh reads to list, critical first: more than one Slack message can show
# (50 blocks of 3,000 characters). A storm that lasts covers ever more incidents; the refresh
# counts them in SQL and reads only these, so its work and memory do not grow with the storm.
LISTED = 2000


class StormDigest(SQLModel, table=True):
    __tablename__ = "storm_digests"
    __table_args__ = (sa.Index("ix_storm_digest_channel_open", "channel", "closed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    # The storm's first incident: its refresh jobs run in that incident's `digest` lane, so
    # they run one at a time, in order, across replicas.
    anchor_incident_id: int = Field(foreign_key="incidents.id")
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ts: str | None = None
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    refresh_queued: bool = False


def _open_digest(session: Session, channel: str) -> StormDigest | None:
    # No flush first: digests are flushed as they are created (below), and intake calls this
    # for every incident it opens, with that incident's rows still pending.
    with session.no_autoflush:
        return session.exec(
            select(StormDigest).where(StormDigest.channel == channel, col(StormDigest.closed_at).is_(None))
        ).first()


def _unannounced(session: Session, channel: str) -> tuple[int, int | None]:
    """How many of the channel's incidents wait for their root message, and the oldest one."""
    count, first = session.exec(
        select(sa.func.count(), sa.func.min(Incident.id)).where(
            Incident.channel == channel,
            col(Incident.slack_ts).is_(None),
            col(Incident.slack_error).is_(None),
        )
    ).one()
    return int(count), first


def on_opened(session: Session, incident: Incident, *, post_interval: float) -> int:
    """In the intake transaction of a newly opened incident: start or refresh the channel's
    digest when the channel is in a storm. Returns how many jobs it queued."""
    channel = incident.channel
    if not channel or post_interval <= 0:
        return 0
    digest = _open_digest(session, channel)
    if digest is None:
        waiting, first_id = _unannounced(session, channel)
        if waiting * post_interval <= STORM_SECONDS or first_id is None:
            return 0
        first = session.get(Incident, first_id)
        assert first is not None
        digest = StormDigest(channel=channel, anchor_incident_id=first_id, started_at=first.created_at)
        session.add(digest)
        session.flush()
    # The first post at once; after that at most one refresh per REFRESH_SECONDS (chat.update
    # is Tier 3, about 50 a minute per workspace, and each refresh takes the write lock twice,
    # which the storm's own intake needs).
    return _queue_refresh(session, digest, delay=0.0 if digest.ts is None else REFRESH_SECONDS)


def on_root_posted(session: Session, incident: Incident) -> int:
    """In the transaction that saves an incident's root message: refresh the digest that
    lists it, so it links the message."""
    if not incident.channel:
        return 0
    digest = _open_digest(session, incident.channel)
    if digest is None or incident.created_at < digest.started_at:
        return 0
    return _queue_refresh(session, digest, delay=REFRESH_SECONDS)


def _queue_refresh(session: Session, digest: StormDigest, *, delay: float = 0.0) -> int:
    if digest.refresh_queued:
        return 0
    digest.refresh_queued = True
    session.add(digest)
    # Before any root message (priority 0): the digest is what makes the storm visible.
    enqueue(
        session,
        DIGEST,
        incident_id=digest.anchor_incident_id,
        payload={"digest": digest.id},
        lane="digest",
        priority=-1,
        delay=delay,
    )
    return 1


@dataclass(frozen=True)
class DigestLine:
    """What the digest shows of one incident."""

    id: int
    severity: str
    title: str
    channel: str | None
    slack_ts: str | None

    @property
    def key(self) -> str:
        return f"INC-{self.id}"


@dataclass(frozen=True)
class DigestView:
    """What a digest covers (its channel's incidents opened since the storm started): counted,
    and the first `LISTED` of them, critical first, then in order of opening."""

    total: int
    critical: int
    announced: int
    lines: list[DigestLine]


def _rank_order() -> sa.ColumnElement[int]:
    return sa.case(*((col(Incident.severity) == s.value, -s.rank) for s in Severity), else_=0)


def covered(session: Session, digest: StormDigest, *, limit: int = LISTED) -> DigestView:
    where = (col(Incident.channel) == digest.channel, col(Incident.created_at) >= digest.started_at)
    total, critical, announced = session.exec(
        select(
            sa.func.count(),
            sa.func.count(sa.case((col(Incident.severity) == Severity.CRITICAL.value, 1))),
            sa.func.count(col(Incident.slack_ts)),
        ).where(*where)
    ).one()
    rows = (
        session.connection()
        .execute(
            sa.select(
                col(Incident.id),
                col(Incident.severity),
                col(Incident.title),
                col(Incident.channel),
                col(Incident.slack_ts),
            )
            .where(*where)
            .order_by(_rank_order(), col(Incident.id))
            .limit(limit)
        )
        .all()
    )
    lines = [DigestLine(int(r[0] or 0), r[1], r[2], r[3], r[4]) for r in rows]
    return DigestView(int(total), int(critical), int(announced), lines)


def take_refresh(session: Session, digest_id: int) -> tuple[StormDigest, DigestView] | None:
    """For the refresh job: the digest and what it covers, clearing the queued flag first so a
    change committed while Slack is called queues another refresh."""
    digest = session.get(StormDigest, digest_id)
    if digest is None:
        return None
    digest.refresh_queued = False
    session.add(digest)
    return digest, covered(session, digest)


def record_posted(session: Session, digest_id: int, ts: str, *, all_announced: bool) -> None:
    digest = session.get(StormDigest, digest_id)
    if digest is None:
        return
    digest.ts = ts
    if all_announced and not digest.refresh_queued:
        digest.closed_at = utcnow()
    session.add(digest)
