"""Resident memory that follows what the bot uses, on glibc (the Debian image and most Linux).

Why: measured with bench/memory.py over 100,000 alerts, the memory the bot had in use stayed
flat (34 MB of malloc'd blocks, the same live Python objects), yet its RSS grew from 126 to
161 MB: 31 MB of it was free memory kept inside glibc's heaps (BENCHMARKS.md). glibc gives a
thread that allocates while another holds the lock an arena of its own (up to 8 per core),
and keeps what is freed in each one for reuse, returning to the system only the free space
at the very top of a heap. Every burst (notifications
parsed by the event loop, applied by the applier thread, posted by the outbox's threads at
once) raises each arena's high-water mark a little more.

Two remedies, both no-ops where the C library is not glibc:
- `limit_arenas()`: at most `ARENAS` arenas (what MALLOC_ARENA_MAX=2 does), set before the
  serving threads start. The threads take turns on the GIL anyway, so sharing arenas adds
  little contention (not measured apart), and fewer heaps means fewer half-empty ones.
- `start_trimming()`: every `TRIM_SECONDS` a daemon thread calls `malloc_trim(0)`, which
  gives the free pages inside every heap back to the system (it walks the free lists: 3-17 ms
  for the bot's heaps, measured), so RSS after a burst comes back down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Any

__all__ = ["ARENAS", "TRIM_SECONDS", "limit_arenas", "start_trimming", "trim"]

logger = logging.getLogger(__name__)

ARENAS = 2
TRIM_SECONDS = 30.0
_M_ARENA_MAX = -8  # from glibc's <malloc.h>


def _glibc() -> Any | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None  # musl, macOS: their allocators have neither (nor glibc's arenas)
    return libc


_LIBC = _glibc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (before threads start); False where that is not glibc."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap memory back to the system now; True if glibc released any."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


def start_trimming(
    interval: float = TRIM_SECONDS, *, stop: threading.Event | None = None
) -> threading.Thread | None:
    """A daemon thread trimming every `interval` seconds until `stop` is set (by default for
    the life of the process); None off glibc. ctypes releases the GIL during the call, so
    requests are not held up."""
    if _LIBC is None:
        return None
    stopping = stop or threading.Event()

    def run() -> None:
        while not stopping.wait(interval):
            try:
                trim()
            except Exception:  # never take the process down for housekeeping
                logger.warning("malloc_trim failed", exc_info=True)

    thread = threading.Thread(target=run, name="malloc-trim", daemon=True)
    thread.start()
    return thread
