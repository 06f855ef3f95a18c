"""The scheduled KPI digest (`INCIDENT_BOT_KPI_DIGEST`): when it is due, and claiming each
schedule point exactly once across replicas and restarts.

Schedules:
* `mon 09:00 Europe/Berlin`: weekly (days `mon`..`sun`, several as `mon,thu`), digest window 7d;
* `daily 09:00 UTC` or `09:00 America/New_York`: every day, window 1d;
* `every 6h` (any Prometheus duration of at least 10s): points aligned to the Unix epoch,
  window the same duration (quick schedules are for trying it out and for tests).
The time zone is an IANA name and defaults to UTC; 09:00 means 09:00 local time, summer or winter.

Exactly once: each replica's scheduler looks, every few seconds, at the newest schedule point
that has passed. Claiming it is one transaction that inserts a row keyed by the schedule and
the point (a unique column) and enqueues the outbox job that posts the digest. The first
replica to commit wins; every other one finds the row (or hits the unique constraint) and
does nothing; a restart finds the row too. A point is only claimed within `grace` of its time
(an hour, or the period when shorter), so a bot that was down for a day does not post
yesterday's digest as if it were today's.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot.db import transaction, utcnow
from bot.durations import format_duration, parse_duration
from bot.errors import ConfigError
from bot.kpis.tables import DigestClaim
from bot.kpis.window import MIN_WINDOW, Window
from bot.outbox import enqueue

__all__ = ["DIGEST_JOB", "DigestClaim", "DigestSchedule", "claim_due", "run_digest_schedule"]

logger = logging.getLogger(__name__)

DIGEST_JOB = "kpi.digest"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UTC_ZONE = ZoneInfo("UTC")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class DigestSchedule:
    text: str
    days: frozenset[int] | None = None  # weekdays (0 = Monday); None: every day
    at: time | None = None
    zone: ZoneInfo = _UTC_ZONE
    every: timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> DigestSchedule:
        where = f"INCIDENT_BOT_KPI_DIGEST={text!r}"
        tokens = text.strip().lower().split()
        original = text.strip().split()
        if not tokens:
            raise ConfigError(f"{where}: empty; write e.g. 'mon 09:00 Europe/Berlin'")
        if tokens[0] == "every":
            if len(tokens) != 2:
                raise ConfigError(f"{where}: write 'every DURATION', e.g. 'every 6h'")
            try:
                period = parse_duration(tokens[1])
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if period < MIN_WINDOW:
                raise ConfigError(f"{where}: at least every {format_duration(MIN_WINDOW)}")
            return cls(text=text, every=period)
        days: frozenset[int] | None = None
        rest, rest_original = tokens, original
        if not _CLOCK.match(tokens[0]):
            if tokens[0] != "daily":
                names = tokens[0].split(",")
                unknown = [n for n in names if n not in _DAYS]
                if unknown:
                    raise ConfigError(
                        f"{where}: unknown day {unknown[0]!r}; days are {', '.join(_DAYS)} (or 'daily')"
                    )
                days = frozenset(_DAYS.index(n) for n in names)
            rest, rest_original = tokens[1:], original[1:]
        if not rest or not _CLOCK.match(rest[0]):
            raise ConfigError(f"{where}: expected a time of day such as 09:00 after the day")
        hour, minute = (int(x) for x in rest[0].split(":"))
        zone = _UTC_ZONE
        if len(rest) > 2:
            raise ConfigError(f"{where}: too many parts; write e.g. 'mon 09:00 Europe/Berlin'")
        if len(rest) == 2:
            try:
                zone = ZoneInfo(rest_original[1])
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"{where}: unknown time zone {rest_original[1]!r} (an IANA name)") from None
        return cls(text=text, days=days, at=time(hour, minute), zone=zone)

    @property
    def period(self) -> timedelta:
        if self.every is not None:
            return self.every
        return timedelta(days=1) if self.days is None or len(self.days) == 7 else timedelta(days=7)

    @property
    def window(self) -> Window:
        """What a digest covers: the week for a weekly one, the day for a daily one."""
        seconds = int(max(self.period, MIN_WINDOW).total_seconds())
        return Window.parse(format_duration(timedelta(seconds=seconds)))

    @property
    def grace(self) -> timedelta:
        return min(timedelta(hours=1), self.period)

    def latest_point(self, now: datetime) -> datetime:
        """The newest schedule point at or before `now` (UTC)."""
        if self.every is not None:
            period = int(self.every.total_seconds())
            stamp = int(now.timestamp()) // period * period
            return datetime.fromtimestamp(stamp, UTC)
        assert self.at is not None
        local = now.astimezone(self.zone)
        day: date = local.date()
        for _ in range(8):
            candidate = datetime.combine(day, self.at, tzinfo=self.zone)
            if candidate <= local and (self.days is None or candidate.weekday() in self.days):
                return candidate.astimezone(UTC)
            day -= timedelta(days=1)
        raise AssertionError("a weekly schedule has a point within 8 days")

    def key(self, point: datetime) -> str:
        return f"{self.text}@{point.astimezone(UTC).isoformat()}"


def claim_due(engine: Engine, schedule: DigestSchedule, *, worker: str, now: datetime | None = None) -> bool:
    """Claim the newest passed schedule point if nobody has; True when this call claimed it
    (and enqueued the digest job in the same transaction)."""
    now = now or utcnow()
    point = schedule.latest_point(now)
    if now - point > schedule.grace:
        return False
    key = schedule.key(point)
    try:
        with transaction(engine) as session:
            if session.exec(select(DigestClaim.id).where(DigestClaim.point_key == key)).first() is not None:
                return False
            session.add(DigestClaim(point_key=key, scheduled_for=point, claimed_by=worker))
            session.flush()
            enqueue(
                session,
                DIGEST_JOB,
                payload={"point": key, "window": schedule.window.text},
                lane="kpi",
                priority=8,
                dedupe_key=f"kpi-digest:{key}",
            )
    except IntegrityError:
        return False  # another replica committed the same point first
    logger.info("KPI digest claimed", extra={"point": key})
    return True


async def run_digest_schedule(
    engine: Engine,
    schedule: DigestSchedule,
    *,
    worker: str,
    wake: Callable[[], None],
    tick: float | None = None,
) -> None:
    """Forever: claim each schedule point when it passes (a background task per replica)."""
    interval = tick if tick is not None else min(30.0, max(0.5, schedule.period.total_seconds() / 10))
    while True:
        try:
            if await anyio.to_thread.run_sync(lambda: claim_due(engine, schedule, worker=worker)):
                wake()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            logger.warning("KPI digest schedule check failed; trying again", extra={"error": repr(exc)})
        await asyncio.sleep(interval)
