"""The journal applier in a process of its own (INCIDENT_BOT_INTAKE_APPLIER=process, the default).

Why a process: turning a notification into an incident (grouping, alerts, timeline, outbox
jobs through the ORM) costs milliseconds of Python per new incident. In the serving process
that work holds the interpreter while a storm's requests wait to be answered; in a process of
its own it runs on another core, and the serving process only parses,
validates and journals. The journal is the only thing the two share (through the database),
so nothing acknowledged is lost whichever of them dies.

The parent starts a fresh interpreter (`python -c`, the spec pickled on its stdin: no forked
copies of threads, sockets or the database pool), wakes it through a pipe when it has
journaled entries (bot/intake_child.py), and reads the child's `Applied` reports from
another pipe on a thread of its own. Not multiprocessing's `spawn`: it always starts
multiprocessing's resource tracker, a third process of 13 MB (BENCHMARKS.md, memory). A
child that dies is started again; a parent that dies takes the child with it
(PR_SET_PDEATHSIG; the child also exits when its parent is gone or the wake pipe closes), so
a kill -9 of `serve` never leaves an applier running with the dead process's identity.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from bot.intake_applier import Applied
from bot.intake_child import WAKE, ApplierSpec

__all__ = ["CHILD_COMMAND", "ApplierProcess", "ApplierSpec"]

logger = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)
# What the child runs: also how `ps` (and the tests) tell it apart.
CHILD_COMMAND = "from bot.intake_child import main; main()"


@dataclass
class ApplierProcess:
    spec: ApplierSpec
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _wake: int | None = field(default=None, init=False)  # the writing end of the current child's pipe
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _reader: threading.Thread | None = field(default=None, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _report: Callable[[list[Applied]], None] | None = field(default=None, init=False)
    _restarts: int = field(default=0, init=False)

    def start(self, report: Callable[[list[Applied]], None]) -> None:
        self._report = report
        self._reader = threading.Thread(target=self._supervise, name="intake-applier-reader", daemon=True)
        self._reader.start()

    def wrote(self) -> None:
        """Wake the child (never blocks: a full pipe already holds wake-ups enough)."""
        with self._lock:  # the descriptor is not closed (and its number reused) meanwhile
            if self._wake is None:
                return
            # BlockingIOError when full; BrokenPipeError when the child is dead (started again)
            with contextlib.suppress(OSError):
                os.write(self._wake, WAKE.pack(time.monotonic()))

    def stop(self) -> None:
        self._stopping.set()
        self._close_wake()  # end of file: the child stops after its current batch
        process = self._process
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _close_wake(self) -> None:
        with self._lock:
            if self._wake is not None:
                os.close(self._wake)
                self._wake = None

    def _spawn(self) -> Connection | None:
        if self._stopping.is_set():
            return None
        report_read, report_write = os.pipe()
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", CHILD_COMMAND],
                stdin=subprocess.PIPE,
                pass_fds=(report_write, wake_read),
            )
        except BaseException:
            os.close(wake_write)
            os.close(report_read)
            raise
        finally:
            os.close(report_write)  # the child holds the only writing end: its death is our EOF
            os.close(wake_read)
        with self._lock:  # not held while starting the child: `wrote()` runs on the event loop
            self._process = process
            if self._stopping.is_set():
                os.close(wake_write)  # stopped meanwhile: the child sees end of file and exits
            else:
                self._wake = wake_write
        assert process.stdin is not None
        # A child that died at once cannot be written to: seen as EOF below, and started again.
        with contextlib.suppress(BrokenPipeError), process.stdin:
            pickle.dump(sys.path, process.stdin)
            pickle.dump((self.spec, report_write, wake_read, os.getpid()), process.stdin)
        logger.info("intake applier process started", extra={"pid": process.pid})
        return Connection(report_read, writable=False)

    def _supervise(self) -> None:
        """Read the child's reports; start it again when it dies, with growing pauses."""
        while not self._stopping.is_set():
            receiver = self._spawn()
            if receiver is None:
                return
            with receiver:
                while True:
                    try:
                        outcomes = receiver.recv()
                    except (EOFError, OSError):
                        break
                    assert self._report is not None
                    self._report(outcomes)
                    self._restarts = 0
            assert self._process is not None
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._close_wake()
            if self._stopping.is_set():
                return
            pause = RESTART_BACKOFF_SECONDS[min(self._restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
            self._restarts += 1
            logger.error(
                "intake applier process exited; starting it again (journaled notifications wait, none lost)",
                extra={"exitcode": self._process.returncode, "retry_in": pause},
            )
            if self._stopping.wait(pause):
                return
