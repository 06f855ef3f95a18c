"""The journal applier in a process of its own (INCIDENT_BOT_INTAKE_APPLIER=process, the default).

Why a process: turning a notification into an incident (grouping, alerts, timeline, outbox
jobs through the ORM) costs milliseconds of Python per new incident. In the serving process
that work holds the interpreter while a storm's requests wait to be answered; in a process of
its own it runs on another core, and the serving process only parses,
validates and journals. The journal is the only thing the two share (through the database),
so nothing acknowledged is lost whichever of them dies.

The parent starts the child with `spawn` (no forked copies of threads, sockets or the
database pool), wakes it through an Event when it has journaled entries, and reads the
child's `Applied` reports from a pipe on a thread of its own. A child that dies is started
again; a parent that dies takes the child with it (PR_SET_PDEATHSIG, and the child also
exits when its parent is gone), so a kill -9 of `serve` never leaves an applier running
with the dead process's identity.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from bot import heap
from bot.config import Settings
from bot.config_files import BotConfig
from bot.db import create_db_engine
from bot.flows.opening import Connected
from bot.intake_applier import BUSY_WINDOW_SECONDS, Applied, JournalApplier
from bot.intake_journal import journal_file_path, open_journal_reader
from bot.intake_rules import build_apply
from bot.logs import configure_logging

__all__ = ["ApplierProcess", "ApplierSpec"]

logger = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)
PR_SET_PDEATHSIG = 1
# A little below the serving process when both want the CPU: the webhook's answers first, but
# not so far below that the applier starves while a storm is acknowledged (at 10 the storm's
# digests came seconds late; at 0 the webhook's p99 at 500 requests/s was 4x; BENCHMARKS.md).
NICENESS = 3


@dataclass(frozen=True)
class ApplierSpec:
    """Everything the child needs, picklable: it loads the configuration files itself."""

    settings: Settings
    connected: Connected
    owner: str


@dataclass
class ApplierProcess:
    spec: ApplierSpec
    _context: Any = field(default_factory=lambda: multiprocessing.get_context("spawn"), init=False)
    _process: Any = field(default=None, init=False)
    _wake: Any = field(default=None, init=False)
    _stop: Any = field(default=None, init=False)
    _last_write: Synchronized[float] | None = field(default=None, init=False)
    _reader: threading.Thread | None = field(default=None, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _report: Callable[[list[Applied]], None] | None = field(default=None, init=False)
    _restarts: int = field(default=0, init=False)

    def start(self, report: Callable[[list[Applied]], None]) -> None:
        self._report = report
        self._wake = self._context.Event()
        self._stop = self._context.Event()
        self._last_write = self._context.Value("d", 0.0, lock=False)
        self._reader = threading.Thread(target=self._supervise, name="intake-applier-reader", daemon=True)
        self._reader.start()

    def wrote(self) -> None:
        if self._last_write is not None:
            self._last_write.value = time.monotonic()
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        if self._stop is not None:
            self._stop.set()
            self._wake.set()
        process = self._process
        if process is not None:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=10)
        # Released now rather than at exit: the semaphores behind the events are named
        # system objects, which multiprocessing would otherwise report as leaked.
        self._wake = self._stop = self._process = None

    def alive(self) -> bool:
        return self._process is not None and bool(self._process.is_alive())

    def _spawn(self) -> Connection:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child_main,
            args=(self.spec, sender, self._wake, self._stop, self._last_write, os.getpid()),
            name="incident-bot-intake-applier",
            daemon=True,
        )
        process.start()
        sender.close()  # the child holds the only writing end: its death is our EOF
        self._process = process
        logger.info("intake applier process started", extra={"pid": process.pid})
        return receiver

    def _supervise(self) -> None:
        """Read the child's reports; start it again when it dies, with growing pauses."""
        while not self._stopping.is_set():
            receiver = self._spawn()
            with receiver:
                while True:
                    try:
                        outcomes = receiver.recv()
                    except (EOFError, OSError):
                        break
                    assert self._report is not None
                    self._report(outcomes)
                    self._restarts = 0
            self._process.join(timeout=5)
            if self._stopping.is_set():
                return
            pause = RESTART_BACKOFF_SECONDS[min(self._restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
            self._restarts += 1
            logger.error(
                "intake applier process exited; starting it again (journaled notifications wait, none lost)",
                extra={"exitcode": self._process.exitcode, "retry_in": pause},
            )
            if self._stopping.wait(pause):
                return


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


def child_main(
    spec: ApplierSpec,
    sender: Connection,
    wake: Any,
    stop: Any,
    last_write: Synchronized[float],
    parent: int,
) -> None:
    """The child's entry point (imported by name under `spawn`)."""
    _die_with_parent(parent)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    heap.limit_arenas()  # as `serve` does (bot/heap.py), before any thread starts
    heap.start_trimming()
    settings = spec.settings
    configure_logging(settings.log_level, settings.log_format)
    engine = create_db_engine(settings.database_url)
    config = BotConfig.load(settings)
    journal_path = journal_file_path(settings.database_url)
    journal = open_journal_reader(journal_path) if journal_path is not None else None
    applier = JournalApplier(
        engine,
        build_apply(config, spec.connected, post_interval=settings.slack_post_interval),
        spec.owner,
        journal,
    )

    def wait(timeout: float) -> None:
        wake.wait(timeout)
        wake.clear()

    def report(outcomes: list[Applied]) -> None:
        try:
            sender.send(outcomes)
        except (BrokenPipeError, OSError):
            os._exit(0)  # the parent is gone

    try:
        applier.run(
            stopping=lambda: stop.is_set() or os.getppid() != parent,
            wait=wait,
            report=report,
            writer_busy=lambda: time.monotonic() - last_write.value < BUSY_WINDOW_SECONDS,
        )
    finally:
        engine.dispose()
        if journal is not None:
            journal.dispose()
        sender.close()
