"""Group commit for intake: many concurrent notifications, one durable transaction.

The journal writer (one thread per process) takes every notification waiting at that moment
and inserts them in one transaction (one fsync on SQLite, one round trip to commit on
PostgreSQL); each request gets its answer when the transaction that holds it has committed,
so a 200 still means "survives a kill -9". The journal applier (bot/intake_applier.py) turns
the entries into incidents, in a process of its own or in a thread of this one
(INCIDENT_BOT_INTAKE_APPLIER), and reports each `Applied` back here.

A request waits for its notification to be applied when the journal is short (the normal
case: its answer names the incident), and answers as soon as the journal row is committed
when a storm has made the journal long, so Alertmanager is never kept waiting behind other
groups' work.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
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
    _queue: queue.Queue[_Request | None] = field(default_factory=queue.Queue, init=False)
    _waiters: dict[int, asyncio.Future[Applied]] = field(default_factory=dict, init=False)
    _backlog: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    # Inline journal: requests of this event-loop iteration, committed together by _flush.
    _pending: list[_Request] = field(default_factory=list, init=False)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self.journal.inline:
            self._thread = threading.Thread(target=self._write_loop, name="intake-writer", daemon=True)
            self._thread.start()
        self.applier.start(self._applied)

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
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
        if self.journal.inline:
            if not self._pending:
                # After every request already parsed in this iteration of the event loop.
                loop.call_soon(self._flush)
            self._pending.append(request)
        else:
            self._queue.put(request)
        await request.committed
        if not short:
            return None
        try:
            applied = await asyncio.wait_for(asyncio.shield(request.applied), APPLY_WAIT_SECONDS)
        except TimeoutError:
            return None
        if applied.error is not None:
            raise Unstorable(applied.error)
        return applied

    def backlog(self) -> int:
        with self._lock:
            return self._backlog

    # ------------------------------------------------------------------ journal writer
    def _flush(self) -> None:
        """Inline journal: one commit for the requests of this loop iteration, on the loop's
        thread (a local append and fsync: cheaper than handing the batch to a thread and
        waiting for the interpreter to switch back)."""
        batch, self._pending = self._pending, []
        if batch:
            self._write(batch)

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
        try:
            ids = self.journal.append([item.text for item in batch])
        except Exception as exc:
            with self._lock:
                self._backlog -= len(batch)
            self._settle([(item.committed, None, exc) for item in batch])
            return
        with self._lock:
            for entry_id, item in zip(ids, batch, strict=True):
                self._waiters[entry_id] = item.applied
        self.applier.wrote()
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

        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here:
            settle()
        elif self._loop is not None and not self._loop.is_closed():
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
                    settled.append((waiter, outcome, None))
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.on_applied, outcomes)
        self._settle(settled)
