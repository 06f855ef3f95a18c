"""Whose turn it is to write to a SQLite database, across threads and processes.

SQLite has one writer at a time. A writer that finds the lock taken waits in SQLite's busy
handler, which polls with sleeps growing to 100 ms: against a writer that commits back to back
(the intake applier during a storm, in a process of its own) it keeps missing the short gaps
between transactions, and the outbox could not claim or finish a job for seconds, so a storm's
digest waited until the storm had been applied (bench/storm.py). So writers first take a turn:
- in a process, a lock its threads queue on and are handed the moment it is free;
- across processes, `flock` on a file beside the database, taken without blocking and retried
  after pauses growing to 2 ms (`POLL_SECONDS`): no lock call has a timeout, and a writer must
  not wait forever behind a stopped process (past `timeout`, SQLite's own busy timeout decides).
Taking turns is fair across processes: a process that retakes the turn within
`COURTESY_SECONDS` of giving it up first lets any process that is waiting (a shared record
lock on the same file says so) go first; otherwise the outbox's threads, one after another,
starved the applier just as the applier had starved them.
The turn ends as the transaction ends (before its COMMIT's fsync: the next writer meets SQLite's
lock for at most that long, within the busy handler's first short sleeps).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

__all__ = ["POLL_SECONDS", "WriteTurn"]

# Retry pauses, doubling from the first to the last: a waiter notices a free turn within
# about 2 ms, and a long wait costs few wake-ups (each needs the interpreter, which the
# serving process's event loop would rather keep).
POLL_SECONDS = (0.0002, 0.002)
# A process that had the turn this recently lets a waiting process go first, for at most
# this long.
COURTESY_SECONDS = 0.02


class WriteTurn:
    def __init__(self, lock_file: Path | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._released_at = -COURTESY_SECONDS
        self._fd: int | None = None
        if lock_file is not None:
            with contextlib.suppress(OSError):  # a read-only directory: threads only
                self._fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def acquire(self, timeout: float) -> bool:
        """True when the turn was taken (then `release` must follow); False after `timeout`."""
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            return False
        if self._depth == 0 and self._fd is not None and not self._lock_file(deadline):
            self._threads.release()
            return False
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._released_at = time.monotonic()
        self._threads.release()

    def _lock_file(self, deadline: float) -> bool:
        assert self._fd is not None
        if time.monotonic() - self._released_at < COURTESY_SECONDS:
            # This process just had the turn and its next writer is here at once (the applier's
            # next slice; the outbox's threads one after another): a process waiting meanwhile
            # goes first, or it could lose every race to our immediate retakes.
            give_up = min(deadline, time.monotonic() + COURTESY_SECONDS)
            while self._others_waiting() and time.monotonic() < give_up:
                time.sleep(POLL_SECONDS[0])
        if self._try_lock():
            return True
        _byte_lock(self._fd, fcntl.LOCK_SH)  # "waiting", for the courtesy above
        try:
            pause, longest = POLL_SECONDS
            while not self._try_lock():
                if time.monotonic() > deadline:
                    return False
                time.sleep(pause)
                pause = min(longest, pause * 2)
            return True
        finally:
            _byte_lock(self._fd, fcntl.LOCK_UN)

    def _try_lock(self) -> bool:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _others_waiting(self) -> bool:
        """Whether another process is waiting for the turn (holds the shared "waiting" lock;
        POSIX record locks, unlike flock, never conflict within one process)."""
        assert self._fd is not None
        try:
            _byte_lock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        _byte_lock(self._fd, fcntl.LOCK_UN)
        return False


def _byte_lock(fd: int, operation: int) -> None:
    """A POSIX record lock on byte 0 of the file: independent of its flock on Linux."""
    fcntl.lockf(fd, operation, 1, 0)
