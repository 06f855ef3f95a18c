"""The journal applier process's side (bot/intake_process.py starts it): its entry point and
the channel through which the serving process wakes it.

Its own module, and kept light, because it is what the child imports: every module loaded
here is resident memory in a second interpreter (bench/memory.py counts both processes).

The channel is a plain pipe, not multiprocessing's primitives: an Event or a Value is backed
by a named semaphore, and any of them (and `spawn` itself) starts multiprocessing's resource
tracker, a third process of 13 MB that only watches for leaked semaphores. Each write on the
pipe is one wake-up carrying the time the writer journaled (8 bytes, written atomically), so
the child also knows whether requests are arriving; end of file (the serving process closed
its end, or died) means stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import struct
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.flows.opening import Connected
    from bot.intake_applier import Applied
    from bot.intake_config import IntakeFiles

__all__ = ["WAKE", "ApplierSpec", "Wakes", "child_main", "main"]

WAKE = struct.Struct("d")  # time.monotonic() of the write: system-wide on Linux, so comparable here
PR_SET_PDEATHSIG = 1
# A little below the serving process when both want the CPU: the webhook's answers first, but
# not so far below that the applier starves while a storm is acknowledged (at 10 the storm's
# digests came seconds late; at 0 the webhook's p99 at 500 requests/s was 4x; BENCHMARKS.md).
NICENESS = 3


@dataclass(frozen=True)
class ApplierSpec:
    """Everything the child needs, picklable: it loads the configuration files itself. Plain
    values rather than the settings, so the child does not load pydantic-settings."""

    database_url: str
    files: IntakeFiles
    connected: Connected
    owner: str
    post_interval: float
    log_level: str
    log_format: str

    @classmethod
    def of(cls, settings: Settings, connected: Connected, owner: str) -> ApplierSpec:
        from bot.intake_config import IntakeFiles

        return cls(
            database_url=settings.database_url,
            files=IntakeFiles.of(settings),
            connected=connected,
            owner=owner,
            post_interval=settings.slack_post_interval,
            log_level=settings.log_level,
            log_format=settings.log_format,
        )


class Wakes:
    """The reading end of the wake pipe, with an Event's meaning: `wait` returns at once when
    a wake-up came since the last `wait` (even if `drain` read it meanwhile), else when one
    comes or after `timeout`. `last_write` is the newest write time seen; `closed` once the
    writer is gone (stopped or dead)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.last_write = 0.0
        self.closed = False
        self._pending = False
        self._partial = b""

    def wait(self, timeout: float) -> None:
        self.drain()
        if not (self._pending or self.closed):
            select.select([self.fd], [], [], timeout)
            self.drain()
        self._pending = False

    def drain(self) -> None:
        """Read what is there without blocking."""
        while not self.closed:
            try:
                chunk = os.read(self.fd, WAKE.size * 512)
            except BlockingIOError:
                return
            if not chunk:
                self.closed = True
                return
            self._pending = True
            data = self._partial + chunk
            whole = len(data) - len(data) % WAKE.size
            self._partial = data[whole:]
            if whole:
                self.last_write = max(self.last_write, WAKE.unpack_from(data, whole - WAKE.size)[0])

    def writer_busy(self, window: float) -> bool:
        """Whether the serving process journaled within the last `window` seconds."""
        self.drain()
        return time.monotonic() - self.last_write < window


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


def main() -> None:
    """Run by `python -c` (bot/intake_process.py): the spec arrives pickled on stdin, after
    the parent's sys.path, so the child imports the same code as the parent."""
    stdin = sys.stdin.buffer
    # Trusted: written by the parent on a pipe only the two of them hold.
    sys.path[:] = pickle.load(stdin)  # noqa: S301
    spec, report_fd, wake_fd, parent = pickle.load(stdin)  # noqa: S301
    stdin.close()
    child_main(spec, Connection(report_fd, readable=False), Wakes(wake_fd), parent)


def child_main(spec: ApplierSpec, sender: Connection, wakes: Wakes, parent: int) -> None:
    _die_with_parent(parent)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    from bot import heap

    heap.limit_arenas()  # as `serve` does (bot/heap.py), before any thread starts
    heap.start_trimming()

    from bot.db import create_db_engine
    from bot.intake_applier import BUSY_WINDOW_SECONDS, JournalApplier
    from bot.intake_config import IntakeConfig
    from bot.intake_journal import journal_file_path, open_journal_reader
    from bot.intake_rules import build_apply
    from bot.logs import configure_logging

    configure_logging(spec.log_level, spec.log_format)
    engine = create_db_engine(spec.database_url)
    config = IntakeConfig.load(spec.files)
    journal_path = journal_file_path(spec.database_url)
    journal = open_journal_reader(journal_path) if journal_path is not None else None
    applier = JournalApplier(
        engine,
        build_apply(config, spec.connected, post_interval=spec.post_interval),
        spec.owner,
        journal,
    )

    def report(outcomes: list[Applied]) -> None:
        try:
            sender.send(outcomes)
        except (BrokenPipeError, OSError):
            os._exit(0)  # the parent is gone

    def stopping() -> bool:
        wakes.drain()
        return wakes.closed or os.getppid() != parent

    try:
        applier.run(
            stopping=stopping,
            wait=wakes.wait,
            report=report,
            writer_busy=lambda: wakes.writer_busy(BUSY_WINDOW_SECONDS),
        )
    finally:
        engine.dispose()
        if journal is not None:
            journal.dispose()
        sender.close()
