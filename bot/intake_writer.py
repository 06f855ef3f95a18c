"""Group commit for intake: many concurrent notifications, one durable transaction.

Two threads per process, each owning one kind of write:
- the journal writer takes every notification waiting at that moment and inserts them in
  one transaction (one fsync on SQLite, one round trip to commit on PostgreSQL); each
  request gets its answer when the transaction that holds it has committed, so a 200 still
  means durable;
- the applier applies journal entries to incidents in arrival order (the ORM path in
  bot/incidents/intake.py, a savepoint each) and deletes them in the same transaction.

A request waits for its notification to be applied when the journal is short (the normal
case: its answer names the incident, as before), and answers as soon as the journal row is
committed when a storm has made the journal long, so Alertmanager is never kept waiting
behind other groups' work. The applier works in short transactions and steps aside while
the writer has requests waiting; in this process the two share a lock, so neither sleeps in
SQLite's busy handler.

Entries whose writer died (kill -9 between the 200 and the apply) are applied by the next
process: at once when that process is on the same host, otherwise after `ADOPT_AFTER`.
A notification the database can never store (a value PostgreSQL refuses) is kept in the
journal with its error, logged, and answered 422 if its request is still waiting.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session, col, select

from bot.alerts import AlertmanagerWebhook, parse_webhook
from bot.db import is_sqlite, transaction, utcnow
from bot.incidents.intake import IntakeResult
from bot.intake_journal import JournalEntry
from bot.outbox_leases import owner_dead, process_identity

__all__ = ["IntakeWriter", "Unstorable"]

logger = logging.getLogger(__name__)

ADOPT_AFTER = timedelta(seconds=30)
ADOPT_EVERY_SECONDS = 5.0
# Journal entries of this process not yet applied, above which a request no longer waits.
WAIT_BACKLOG = 4
# How long a request waits for its apply before answering with the journal commit alone.
APPLY_WAIT_SECONDS = 5.0
BATCH = 512
APPLY_BATCH = 64
APPLY_SLICE_SECONDS = 0.02
RACE_ATTEMPTS = 5

Apply = Callable[[Session, AlertmanagerWebhook], IntakeResult]


class Unstorable(Exception):
    """The notification was journaled but can never be applied: the database refuses a value."""


@dataclass
class _Request:
    text: str
    committed: asyncio.Future[int]
    applied: asyncio.Future[IntakeResult]


@dataclass
class IntakeWriter:
    engine: Engine
    apply: Apply
    on_applied: Callable[[IntakeResult], None]
    owner: str = field(default_factory=process_identity)
    _queue: queue.Queue[_Request | None] = field(default_factory=queue.Queue, init=False)
    _waiters: dict[int, asyncio.Future[IntakeResult]] = field(default_factory=dict, init=False)
    _backlog: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _db_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _wake: threading.Event = field(default_factory=threading.Event, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _last_write: float = field(default=0.0, init=False)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for name, target in (("intake-writer", self._write_loop), ("intake-applier", self._apply_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wake.set()  # entries left by an earlier process

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)

    async def accept(self, text: str) -> IntakeResult | None:
        """Journal one notification (raises the database's error if it could not be
        committed); then its IntakeResult, or None when it will be applied later."""
        loop = asyncio.get_running_loop()
        with self._lock:
            # Counted from arrival, not from commit: a burst arriving at once must not all
            # decide to wait because none of it is committed yet.
            short = self._backlog < WAIT_BACKLOG
            self._backlog += 1
        request = _Request(text, loop.create_future(), loop.create_future())
        self._queue.put(request)
        await request.committed
        if not short:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(request.applied), APPLY_WAIT_SECONDS)
        except TimeoutError:
            return None

    # ------------------------------------------------------------------ journal writer
    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[_Request]) -> None:
        table = JournalEntry.__table__  # type: ignore[attr-defined]
        now = utcnow()
        try:
            with self._db_lock, self.engine.begin() as connection:
                # One statement for the whole batch (SQLAlchemy's "insertmanyvalues"), ids in
                # the order of the requests.
                rows = connection.execute(
                    sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
                    [
                        {"received_at": now, "owner": self.owner, "body": item.text, "attempts": 0}
                        for item in batch
                    ],
                ).all()
                ids = [int(row.id) for row in rows]
        except Exception as exc:
            with self._lock:
                self._backlog -= len(batch)
            self._settle([(item.committed, None, exc) for item in batch])
            return
        self._last_write = time.monotonic()
        with self._lock:
            for entry_id, item in zip(ids, batch, strict=True):
                self._waiters[entry_id] = item.applied
        self._wake.set()
        self._settle([(item.committed, entry_id, None) for entry_id, item in zip(ids, batch, strict=True)])

    def _settle(self, outcomes: Sequence[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
        def settle() -> None:
            for future, value, error in outcomes:
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(settle)

    # ------------------------------------------------------------------ applier
    def _apply_loop(self) -> None:
        pause = 0.0
        adopted_at = 0.0
        while not self._stopping.is_set():
            self._wake.wait(timeout=1.0 if pause == 0 else pause)
            self._wake.clear()
            while not self._stopping.is_set():
                try:
                    if time.monotonic() - adopted_at > ADOPT_EVERY_SECONDS:
                        self.adopt_orphans()
                        adopted_at = time.monotonic()
                    applied = self.apply_batch()
                except (OperationalError, InterfaceError) as exc:
                    logger.error(
                        "journal apply failed; database unavailable?", extra={"error": str(exc.orig)}
                    )
                    pause = min(5.0, max(0.5, pause * 2))
                    break
                except Exception:
                    logger.exception("journal apply failed")
                    pause = min(5.0, max(0.5, pause * 2))
                    break
                pause = 0.0
                if not applied:
                    break
                if time.monotonic() - self._last_write < 0.1:
                    # Requests are arriving: give the event loop and the writer the GIL and
                    # the database for as long as this slice had them.
                    time.sleep(APPLY_SLICE_SECONDS)

    def adopt_orphans(self) -> int:
        """Take over the unapplied entries of dead processes on this host (a restart after kill -9)."""
        table = JournalEntry.__table__  # type: ignore[attr-defined]
        with self._db_lock, self.engine.begin() as connection:
            owners = connection.execute(
                sa.select(table.c.owner)
                .where(table.c.owner != self.owner, table.c.error.is_(None))
                .distinct()
            ).scalars()
            dead = [owner for owner in owners if owner_dead(owner, self.owner)]
            if dead:
                connection.execute(sa.update(table).where(table.c.owner.in_(dead)).values(owner=self.owner))
        if dead:
            logger.warning("applying notifications journaled by a dead process", extra={"owners": dead})
        return len(dead)

    def apply_batch(self) -> int:
        """Apply the oldest due journal entries in one short transaction; how many were taken."""
        outcomes: list[tuple[int, IntakeResult | None, BaseException | None]] = []
        with self._db_lock, transaction(self.engine) as session:
            stale = utcnow() - ADOPT_AFTER
            query = (
                select(JournalEntry)
                .where(
                    col(JournalEntry.error).is_(None),
                    sa.or_(col(JournalEntry.owner) == self.owner, col(JournalEntry.received_at) < stale),
                )
                .order_by(col(JournalEntry.id))
                .limit(APPLY_BATCH)
            )
            if not is_sqlite(self.engine):
                query = query.with_for_update(skip_locked=True)
            rows = session.exec(query).all()
            deadline = time.perf_counter() + APPLY_SLICE_SECONDS
            for row in rows:
                if outcomes and time.perf_counter() > deadline:
                    break
                assert row.id is not None
                outcomes.append((row.id, *self._apply_one(session, row)))
        self._finish(outcomes)
        return len(outcomes)

    def _apply_one(
        self, session: Session, row: JournalEntry
    ) -> tuple[IntakeResult | None, BaseException | None]:
        try:
            webhook = parse_webhook(row.body.encode())
        except Exception as exc:  # validated before it was journaled: only a changed model gets here
            return self._poison(session, row, exc)
        for attempt in range(RACE_ATTEMPTS):
            try:
                with session.begin_nested():
                    result = self.apply(session, webhook)
            except IntegrityError as exc:
                # A concurrent replica applied the same group (HA peers): retry sees its rows.
                if attempt == RACE_ATTEMPTS - 1:
                    return self._poison(session, row, exc)
                continue
            except (OperationalError, InterfaceError):
                raise
            except (DataError, ValueError) as exc:
                return self._poison(session, row, exc)
            session.delete(row)
            return result, None
        raise AssertionError("unreachable")

    def _poison(self, session: Session, row: JournalEntry, exc: BaseException) -> tuple[None, BaseException]:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:500]
        logger.error(
            "notification cannot be stored; kept in the journal", extra={"entry": row.id, "error": reason}
        )
        row.error, row.attempts = reason, row.attempts + 1
        session.add(row)
        return None, Unstorable(reason)

    def _finish(self, outcomes: list[tuple[int, IntakeResult | None, BaseException | None]]) -> None:
        if not outcomes:
            return
        settled: list[tuple[asyncio.Future[Any], object, BaseException | None]] = []
        with self._lock:
            for entry_id, result, error in outcomes:
                waiter = self._waiters.pop(entry_id, None)
                if waiter is not None:
                    self._backlog -= 1
                    settled.append((waiter, result, error))
        results = [result for _, result, _ in outcomes if result is not None]
        if results and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._report, results)
        self._settle(settled)

    def _report(self, results: list[IntakeResult]) -> None:
        for result in results:
            self.on_applied(result)

    def backlog(self) -> int:
        with self._lock:
            return self._backlog
