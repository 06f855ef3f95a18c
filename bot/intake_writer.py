"""Group commit for intake: many concurrent notifications, one durable transaction.

One commit is under way at a time; every notification that arrives meanwhile waits for the
next one, so they are inserted together (one fsync on SQLite, one round trip to commit on
PostgreSQL). On PostgreSQL the commit runs on the journal writer thread while the event loop
goes on reading requests (a hand-off per batch, not per request); SQLite's local journal file
commits on the event loop itself, faster than any hand-off (bot/intake_journal.py). Each
request gets its answer when the transaction that holds it has committed, so a 200 still
means "survives a kill -9". The journal applier
(bot/intake_applier.py) turns the entries into incidents, in a process of its own or in a
thread of this one (INCIDENT_BOT_INTAKE_APPLIER), and reports each `Applied` back here.

A request waits for its notification to be applied when the journal is short (the normal
case: its answer names the incident), and answers as soon as the journal row is committed
when a storm has made the journal long, so Alertmanager is never kept waiting behind other
groups' work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from bot.intake_applier import BUSY_WINDOW_SECONDS, Applied, JournalApplier
from bot.intake_journal import JournalSink

__all__ = ["ApplierRunner", "IntakeWriter", "ThreadApplier", "Unstorable"]

logger = logging.getLogger(__name__)

# Journal entries of this process not yet applied, above which a request no longer waits.
WAIT_BACKLOG = 4
# How long a request waits for its apply before answering with the journal commit alone.
APPLY_WAIT_SECONDS = 5.0
BATCH = 512
# In a storm, how often the count of notifications answered before their apply is logged.
QUEUED_LOG_SECONDS = 10.0
# An entry not reported applied by this process's applier after this long was adopted by
# another replica (after bot.intake_applier.ADOPT_AFTER): stop counting it as our backlog.
FORGET_AFTER_SECONDS = 60.0


class Unstorable(Exception):
    """The notification was journaled but can never be applied: the database refuses a value."""


class ApplierRunner(Protocol):
    """Where the journal applier runs: a thread here, or a process of its own."""

    def start(self, report: Callable[[list[Applied]], None]) -> None: ...

    def wrote(self) -> None:
        """New entries are committed: wake the applier (and tell it requests are arriving)."""

    def stop(self) -> None: ...

    def alive(self) -> bool: ...


@dataclass
class ThreadApplier:
    """The applier as a thread of the serving process (INCIDENT_BOT_INTAKE_APPLIER=thread)."""

    applier: JournalApplier
    _wake: threading.Event = field(default_factory=threading.Event, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _last_write: float = field(default=0.0, init=False)

    def start(self, report: Callable[[list[Applied]], None]) -> None:
        def wait(timeout: float) -> None:
            self._wake.wait(timeout)
            self._wake.clear()

        def run() -> None:
            self.applier.run(
                stopping=self._stopping.is_set,
                wait=wait,
                report=report,
                writer_busy=lambda: time.monotonic() - self._last_write < BUSY_WINDOW_SECONDS,
            )

        self._thread = threading.Thread(target=run, name="intake-applier", daemon=True)
        self._thread.start()
        self._wake.set()  # entries left by an earlier process

    def wrote(self) -> None:
        self._last_write = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.applier.journal_file is not None:
            self.applier.journal_file.dispose()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


@dataclass
class _Request:
    text: str
    committed: asyncio.Future[int]
    applied: asyncio.Future[Applied]


@dataclass
class IntakeWriter:
    journal: JournalSink
    applier: ApplierRunner
    on_applied: Callable[[list[Applied]], None]
    #: Closed with the writer: engines opened for it (the journal file's reader for /metrics).
    also_close: Engine | None = None
    _waiters: dict[int, tuple[asyncio.Future[Applied], float]] = field(default_factory=dict, init=False)
    _forgotten_at: float = field(default=0.0, init=False)
    _backlog: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    # Requests waiting for the next commit, and whether one is under way: one commit at a
    # time, and everything that arrived during it goes into the next (group commit).
    _pending: list[_Request] = field(default_factory=list, init=False)
    _committing: bool = field(default=False, init=False)
    _queued: int = field(default=0, init=False)
    _queued_since: float = field(default=0.0, init=False)
    _executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="intake-writer"), init=False
    )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.applier.start(self._applied)

    def stop(self) -> None:
        self._executor.shutdown(wait=True)
        self.applier.stop()
        self.journal.close()
        if self.also_close is not None:
            self.also_close.dispose()

    async def accept(self, text: str) -> Applied | None:
        """Journal one notification (raises the database's error if it could not be
        committed); then what became of it, or None when it will be applied later."""
        loop = asyncio.get_running_loop()
        with self._lock:
            # Counted from arrival, not from commit: a burst arriving at once must not all
            # decide to wait because none of it is committed yet.
            short = self._backlog < WAIT_BACKLOG
            self._backlog += 1
        request = _Request(text, loop.create_future(), loop.create_future())
        self._pending.append(request)
        if not self._committing and len(self._pending) == 1:
            # After the requests already being parsed in this turn of the event loop.
            loop.call_soon(self._commit_pending)
        await request.committed
        if not short:
            self._count_queued()
            return None
        try:
            applied = await asyncio.wait_for(asyncio.shield(request.applied), APPLY_WAIT_SECONDS)
        except TimeoutError:
            return None
        if applied.error is not None:
            raise Unstorable(applied.error)
        return applied

    def _forget_adopted(self) -> None:
        now = time.monotonic()
        if now - self._forgotten_at < FORGET_AFTER_SECONDS / 6:
            return
        self._forgotten_at = now
        with self._lock:
            stale = [i for i, (_, since) in self._waiters.items() if now - since > FORGET_AFTER_SECONDS]
            for entry_id in stale:
                del self._waiters[entry_id]  # its request answered long ago (it waits 5 s at most)
                self._backlog -= 1
        if stale:
            logger.warning(
                "journal entries of this process not applied by it for a minute (another replica's?)",
                extra={"count": len(stale)},
            )

    def _count_queued(self) -> None:
        now = time.monotonic()
        if self._queued == 0:
            self._queued_since = now
        self._queued += 1
        if now - self._queued_since >= QUEUED_LOG_SECONDS:
            logger.info(
                "notifications journaled without waiting for their apply (a storm); the applier catches up",
                extra={"count": self._queued, "seconds": round(now - self._queued_since, 1)},
            )
            self._queued = 0

    # ------------------------------------------------------------------ journal writer
    def _commit_pending(self) -> None:
        """On the event loop: hand what is pending to the writer thread, which commits it
        while the loop goes on reading the next requests (they form the next batch)."""
        if self._committing or not self._pending:
            return
        self._forget_adopted()
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        self._committing = True
        assert self._loop is not None
        if self.journal.inline:
            done: asyncio.Future[list[int]] = self._loop.create_future()
            try:
                done.set_result(self._write(batch))
            except Exception as exc:
                done.set_exception(exc)
            # The requests that arrived during the commit form the next batch.
            self._loop.call_soon(self._committed, batch, done)
            return
        done = self._loop.run_in_executor(self._executor, self._write, batch)
        done.add_done_callback(lambda outcome: self._committed(batch, outcome))

    def _write(self, batch: list[_Request]) -> list[int]:
        """One transaction for the batch (on the writer thread, or inline for a local file)."""
        ids = self.journal.append([item.text for item in batch])
        now = time.monotonic()
        with self._lock:
            # Before the applier can see the entries, so none of its reports finds no waiter.
            for entry_id, item in zip(ids, batch, strict=True):
                self._waiters[entry_id] = (item.applied, now)
        self.applier.wrote()
        return ids

    def _committed(self, batch: list[_Request], outcome: asyncio.Future[list[int]]) -> None:
        self._committing = False
        error = outcome.exception()
        if error is not None:
            with self._lock:
                self._backlog -= len(batch)
            for item in batch:
                if not item.committed.done():
                    item.committed.set_exception(error)
        else:
            for entry_id, item in zip(outcome.result(), batch, strict=True):
                if not item.committed.done():
                    item.committed.set_result(entry_id)
        self._commit_pending()

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

    # ------------------------------------------------------------------ applier's reports
    def _applied(self, outcomes: list[Applied]) -> None:
        """Called from the applier's thread (or the thread reading the applier process)."""
        settled: list[tuple[asyncio.Future[Any], object, BaseException | None]] = []
        mine = [outcome for outcome in outcomes if outcome.journal == self.journal.kind]
        if mine:
            self.journal.applied_through(max(outcome.entry_id for outcome in mine))
        with self._lock:
            for outcome in mine:
                waiter = self._waiters.pop(outcome.entry_id, None)
                if waiter is not None:
                    self._backlog -= 1
                    settled.append((waiter[0], outcome, None))
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.on_applied, outcomes)
        self._settle(settled)
