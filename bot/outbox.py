"""Durable job queue: slow I/O (Slack, Prometheus, Kubernetes) happens here, never in a request.

A job is written in the same transaction as the incident change that caused it, so a 200 to
Alertmanager means the Slack message *will* be sent, across Slack outages, restarts and a
kill -9. Workers claim one job at a time under a short lease renewed while the job runs; a
job whose worker died is claimed again when its lease runs out, or at once when the dead
process was on this host (bot/outbox_leases.py).

Ordering: jobs run one at a time per (incident, lane), oldest first, so a thread reads in the
order things happened and the root message (the first job of an incident's `slack` lane)
always goes out before any thread detail. Jobs marked `needs_root` wait until the incident
has its Slack message. Across incidents, lower `priority` goes first: under a backlog every
new incident is announced before anyone's diagnostics.

Failures: `RetryableUpstreamError` is retried with capped exponential backoff and jitter (or
the upstream's Retry-After) for as long as it takes; `PermanentUpstreamError` and other
`BotError`s are recorded on the job and not retried; unexpected exceptions are bugs, retried
a bounded number of times so a poison job cannot spin forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Column, Field, Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot.db import UTCDateTime, is_sqlite, reading, transaction, utcnow
from bot.errors import BotError, ConfigError, RetryableUpstreamError
from bot.incidents.models import Incident
from bot.outbox_leases import LEASE, heartbeat, process_identity, sweep_periodically

__all__ = [
    "ClaimedJob",
    "Handler",
    "JobStatus",
    "Outbox",
    "OutboxJob",
    "Reschedule",
    "enqueue",
    "fail_waiting_for_root",
]

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
MAX_ATTEMPTS_ON_BUGS = 12


class JobStatus:
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OutboxJob(SQLModel, table=True):
    __tablename__ = "outbox_jobs"
    __table_args__ = (sa.Index("ix_outbox_due", "status", "not_before"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    lane: str = "slack"
    priority: int = 5
    needs_root: bool = False
    incident_id: int | None = Field(default=None, foreign_key="incidents.id", index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    dedupe_key: str | None = Field(default=None, unique=True)
    status: str = Field(default=JobStatus.PENDING)
    attempts: int = 0
    last_error: str | None = None
    locked_by: str | None = None
    locked_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    not_before: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    incident_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    last_error: str | None
    claimed_by: str = ""


class Reschedule(Exception):
    """Raised by a handler that is not finished and wants to run again later (a watch that
    polls, diagnostics waiting for Prometheus). Not counted as a failure."""

    def __init__(self, delay: float, *, payload: dict[str, Any] | None = None, note: str | None = None):
        super().__init__(note or "rescheduled")
        self.delay = delay
        self.payload = payload
        self.note = note


Handler = Callable[[ClaimedJob], Awaitable[None]]


def fail_waiting_for_root(session: Session, incident_id: int, reason: str) -> int:
    """Jobs that wait for an incident's root message can never run once posting it failed
    for good; mark them failed with the reason instead of leaving them pending forever."""
    rows = session.exec(
        select(OutboxJob).where(
            OutboxJob.incident_id == incident_id,
            col(OutboxJob.needs_root).is_(True),
            OutboxJob.status == JobStatus.PENDING,
        )
    ).all()
    for row in rows:
        row.status, row.last_error, row.finished_at = JobStatus.FAILED, reason, utcnow()
        session.add(row)
    return len(rows)


# Every kind a module may enqueue, declared where its constant is defined (`job_kind`), so the
# composition root can check at start that each has exactly one handler.
_DECLARED_KINDS: set[str] = set()


def job_kind(kind: str) -> str:
    """Declare a job kind this module enqueues; returns it, for the module's constant."""
    _DECLARED_KINDS.add(kind)
    return kind


def declared_kinds() -> frozenset[str]:
    return frozenset(_DECLARED_KINDS)


def enqueue(
    session: Session,
    kind: str,
    *,
    incident_id: int | None = None,
    payload: dict[str, Any] | None = None,
    lane: str = "slack",
    priority: int = 5,
    needs_root: bool = False,
    dedupe_key: str | None = None,
    coalesce: bool = False,
    delay: float = 0.0,
) -> OutboxJob | None:
    """Add a job inside the caller's transaction. Returns None when it is a duplicate:
    `dedupe_key` already used, or `coalesce` and the same kind is already waiting for this
    incident (jobs that render current state, like updating the root message, need to run
    once, not once per change)."""
    # Looked up without flushing what the transaction has pending (intake opens an incident
    # with a dozen pending rows, and a flush per enqueue was a good part of its cost); jobs
    # queued earlier in this transaction and not yet flushed are looked at in the session.
    unflushed = [o for o in session.new if isinstance(o, OutboxJob)]
    with session.no_autoflush:
        if dedupe_key is not None and (
            any(o.dedupe_key == dedupe_key for o in unflushed)
            or session.exec(select(OutboxJob.id).where(OutboxJob.dedupe_key == dedupe_key)).first()
            is not None
        ):
            return None
        if coalesce:
            waiting = any(
                o.kind == kind and o.incident_id == incident_id and o.status == JobStatus.PENDING
                for o in unflushed
            ) or (
                session.exec(
                    select(OutboxJob.id).where(
                        OutboxJob.kind == kind,
                        OutboxJob.incident_id == incident_id,
                        OutboxJob.status == JobStatus.PENDING,
                    )
                ).first()
                is not None
            )
            if waiting:
                return None
    failed_root = _failed_root(session, incident_id) if needs_root else None
    job = OutboxJob(
        kind=kind,
        lane=lane,
        priority=priority,
        needs_root=needs_root,
        incident_id=incident_id,
        payload=payload or {},
        dedupe_key=dedupe_key,
        not_before=utcnow() + timedelta(seconds=delay),
    )
    if failed_root is not None:
        # Recorded, so the audit shows what could not be told, but never run.
        job.status, job.finished_at = JobStatus.FAILED, utcnow()
        job.last_error = f"the root message could not be posted: {failed_root}"
    session.add(job)
    return job


def _failed_root(session: Session, incident_id: int | None) -> str | None:
    """Why the incident's root message failed for good, if it did and was never posted."""
    if incident_id is None:
        return None
    incident = session.get(Incident, incident_id)
    if incident is None or incident.slack_ts is not None:
        return None
    return incident.slack_error


def _severity_order() -> sa.ColumnElement[int]:
    return sa.case(
        (col(Incident.severity) == "critical", 0), (col(Incident.severity) == "warning", 1), else_=2
    )


@dataclass
class Outbox:
    """Claims and runs jobs with a pool of asyncio workers; database calls go to threads."""

    engine: Engine
    handlers: dict[str, Handler] = field(default_factory=dict)
    concurrency: int = 4
    poll_interval: float = 0.5
    worker_id: str = field(default_factory=process_identity)
    on_result: Callable[[str, str], None] | None = None
    #: Channels whose posts are queued in this process (Slack's pace): their incidents' "slack"
    #: lane jobs are left for later instead of being claimed only to be handed back, a write
    #: transaction each, hundreds a second in a storm, that the intake applier waits behind.
    busy_channels: Callable[[], Collection[str]] = field(default=lambda: ())
    # Idle workers, each waiting on its future; `wake` starts one of them. A wake-up that found
    # none idle is remembered, so the next worker to find nothing looks once more.
    _idle: deque[asyncio.Future[None]] = field(default_factory=deque, init=False, repr=False)
    _missed: bool = field(default=False, init=False, repr=False)

    def register(self, handlers: Mapping[str, Handler]) -> None:
        """Add handlers; a kind that already has one is a wiring mistake, refused (a silent
        overwrite would send that kind's jobs to the wrong code)."""
        for kind, handler in handlers.items():
            if kind in self.handlers:
                raise ConfigError(f"two handlers for the outbox job kind {kind!r}")
            self.handlers[kind] = handler

    def check_handlers(self, kinds: Iterable[str] | None = None) -> None:
        """Every declared job kind (or every one of `kinds`) has a handler: checked at start,
        so a kind nobody handles fails the start instead of every such job at run time."""
        missing = sorted(set(declared_kinds() if kinds is None else kinds) - set(self.handlers))
        if missing:
            raise ConfigError(f"no outbox handler for the job kind(s): {', '.join(missing)}")

    def wake(self) -> None:
        """Tell one idle worker that a job was just committed (same process; other replicas
        find it by polling). One, not all: each would run a claim, and in a storm the jobs
        committed at once are mostly for channels busy at Slack's pace; a worker that claims a
        job wakes the next one, so a burst of runnable jobs still fans out."""
        while self._idle:
            idle = self._idle.popleft()
            if not idle.done():
                idle.set_result(None)
                return
        self._missed = True

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(sweep_periodically, self.engine, self.worker_id, self.wake)
            for index in range(self.concurrency):
                group.start_soon(self._worker, index)

    async def _worker(self, index: int) -> None:
        name = f"{self.worker_id}/{index}"
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before looking, so a wake-up that arrives while we look is not lost.
            self._missed = False
            try:
                job = await anyio.to_thread.run_sync(self.claim, name)
            except Exception:
                logger.exception("outbox claim failed; database unavailable?")
                await anyio.sleep(self.poll_interval * 4)
                continue
            if job is None:
                if self._missed:
                    continue
                idle: asyncio.Future[None] = loop.create_future()
                self._idle.append(idle)
                with anyio.move_on_after(self.poll_interval):
                    await idle
                if not idle.done():
                    idle.cancel()  # skipped by `wake`, dropped from the queue below
                while self._idle and self._idle[0].done():
                    self._idle.popleft()
                continue
            self.wake()
            await self.execute(job)

    async def run_once(self) -> bool:
        """Claim and run one due job, if any: for tests and tools that drive the queue step
        by step. Returns whether a job ran."""
        job = await anyio.to_thread.run_sync(self.claim, f"{self.worker_id}/once")
        if job is None:
            return False
        await self.execute(job)
        return True

    async def execute(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.kind)
        outcome: str
        try:
            if handler is None:
                raise BotError(f"no handler for job kind {job.kind!r}")
            async with heartbeat(self.engine, job.id, job.claimed_by):
                await handler(job)
        except Reschedule as again:
            outcome = "rescheduled"
            await self._finish(job, JobStatus.PENDING, again.note, again.delay, again.payload, count=False)
        except RetryableUpstreamError as exc:
            outcome = "retry"
            delay = exc.retry_after if exc.retry_after is not None else self.backoff(job.attempts)
            logger.warning(
                "outbox job failed, will retry",
                extra={"job": job.id, "kind": job.kind, "error": str(exc), "retry_in": delay},
            )
            await self._finish(job, JobStatus.PENDING, f"{exc.code}: {exc}", delay)
        except BotError as exc:
            outcome = "failed"
            logger.error(
                "outbox job failed permanently",
                extra={"job": job.id, "kind": job.kind, "error": str(exc)},
            )
            await self._finish(job, JobStatus.FAILED, f"{exc.code}: {exc}")
        except Exception as exc:
            logger.exception("outbox job crashed", extra={"job": job.id, "kind": job.kind})
            if job.attempts >= MAX_ATTEMPTS_ON_BUGS:
                outcome = "failed"
                await self._finish(job, JobStatus.FAILED, f"crashed: {exc!r}")
            else:
                outcome = "retry"
                await self._finish(job, JobStatus.PENDING, f"crashed: {exc!r}", self.backoff(job.attempts))
        else:
            outcome = "done"
            await self._finish(job, JobStatus.DONE, None)
        if self.on_result is not None:
            self.on_result(job.kind, outcome)

    @staticmethod
    def backoff(attempts: int) -> float:
        base = min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempts - 1))
        return base * random.uniform(0.5, 1.0)

    async def _finish(
        self,
        job: ClaimedJob,
        status: str,
        error: str | None,
        delay: float = 0.0,
        payload: dict[str, Any] | None = None,
        *,
        count: bool = True,
    ) -> None:
        def write() -> None:
            with transaction(self.engine) as session:
                row = session.get(OutboxJob, job.id)
                if row is None:
                    return
                row.status = status
                if count or error is not None:
                    row.last_error = error
                row.locked_by = None
                row.locked_until = None
                if not count:
                    row.attempts = max(0, row.attempts - 1)
                if payload is not None:
                    row.payload = payload
                if status == JobStatus.PENDING:
                    row.not_before = utcnow() + timedelta(seconds=delay)
                else:
                    row.finished_at = utcnow()

        # The job's effect already happened; keep trying to record that, or a retry would
        # repeat it. Handlers are idempotent for exactly this window.
        for attempt in range(10):
            try:
                await anyio.to_thread.run_sync(write)
                return
            except Exception:
                logger.exception("recording outbox job result failed", extra={"job": job.id})
                await anyio.sleep(min(30.0, 0.5 * 2**attempt))

    def claim(self, worker: str) -> ClaimedJob | None:
        now = utcnow()
        query = self._due(now)
        if is_sqlite(self.engine):
            # Look before taking SQLite's single write lock: most claims in a storm find
            # nothing (the channels are busy at Slack's pace), and each would otherwise
            # queue for the write lock behind intake only to write nothing.
            with reading(self.engine) as session:
                if session.connection().execute(query.with_only_columns(col(OutboxJob.id))).first() is None:
                    return None
        with transaction(self.engine) as session:
            if not is_sqlite(self.engine):
                query = query.with_for_update(skip_locked=True, of=OutboxJob)
            row = session.exec(query).first()
            if row is None:
                return None
            row.status = JobStatus.RUNNING
            row.locked_by = worker
            row.locked_until = now + LEASE
            row.attempts += 1
            assert row.id is not None
            return ClaimedJob(
                id=row.id,
                kind=row.kind,
                incident_id=row.incident_id,
                payload=dict(row.payload),
                attempts=row.attempts,
                created_at=row.created_at,
                last_error=row.last_error,
                claimed_by=worker,
            )

    def _due(self, now: datetime) -> SelectOfScalar[OutboxJob]:
        """The next job a worker may run now: due, not blocked by an older job of its incident
        and lane, its root message posted if it needs one, not for a channel busy at Slack's
        pace; by priority, critical incidents first among equals, then oldest."""
        older = sa.orm.aliased(OutboxJob)
        blocked_by_older = (
            select(older.id)
            .where(
                col(older.incident_id) == col(OutboxJob.incident_id),
                col(older.lane) == col(OutboxJob.lane),
                col(older.id) < col(OutboxJob.id),
                col(older.status).in_([JobStatus.PENDING, JobStatus.RUNNING]),
            )
            .exists()
        )
        busy = list(self.busy_channels())
        return (
            select(OutboxJob)
            .outerjoin(Incident, col(Incident.id) == OutboxJob.incident_id)
            .where(
                sa.or_(
                    col(OutboxJob.lane) != "slack",
                    col(Incident.channel).is_(None),
                    col(Incident.channel).not_in(busy),
                )
                if busy
                else sa.true(),
                sa.or_(
                    col(OutboxJob.status) == JobStatus.PENDING,
                    sa.and_(col(OutboxJob.status) == JobStatus.RUNNING, col(OutboxJob.locked_until) < now),
                ),
                OutboxJob.not_before <= now,
                sa.or_(col(OutboxJob.needs_root).is_(False), col(Incident.slack_ts).is_not(None)),
                ~blocked_by_older,
            )
            # Critical incidents first among jobs of the same priority (a storm's root messages).
            .order_by(col(OutboxJob.priority), _severity_order(), col(OutboxJob.id))
            .limit(1)
        )

    def depth(self) -> dict[str, int]:
        """Jobs per status that are not done, for /metrics."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(OutboxJob.status, sa.func.count())
                .where(OutboxJob.status != JobStatus.DONE)
                .group_by(OutboxJob.status)
            ).all()
        return {status: count for status, count in rows}
