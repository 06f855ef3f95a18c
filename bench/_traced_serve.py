"""`python -m bench._traced_serve DIR FRAMES serve ...`: the bot's own `serve` command with a
memory probe, for bench/memory.py's diagnosis only (never how the bot is run).

With FRAMES > 0, tracemalloc traces Python allocations (slow; RSS then includes the traces).
On SIGUSR1 the probe writes `DIR/snapN.json`: live objects counted by type, glibc's malloc
statistics (mallinfo2: in use, free inside the heap, mmapped), SQLite's own allocator
(sqlite3_memory_used: page caches, schemas, statements of every connection), the thread count;
with tracing also `DIR/snapN.tm` (a tracemalloc snapshot); then `DIR/snapN.done`.
On SIGUSR2 it calls glibc's malloc_trim(0) (free heap pages back to the system), then writes
`DIR/trimN.done`: how much of the resident memory was free memory glibc kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def c_memory() -> dict[str, Any]:
    """What the C allocators hold, in MB (what tracemalloc cannot see)."""
    found: dict[str, Any] = {}
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        found["malloc_heap_mb"] = info.arena / 2**20
        found["malloc_in_use_mb"] = info.uordblks / 2**20
        found["malloc_free_in_heap_mb"] = info.fordblks / 2**20
        found["malloc_mmapped_mb"] = info.hblkhd / 2**20
    name = ctypes.util.find_library("sqlite3")
    if name:
        sqlite = ctypes.CDLL(name)
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite.sqlite3_memory_highwater.restype = ctypes.c_int64
        sqlite.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
        found["sqlite_mb"] = sqlite.sqlite3_memory_used() / 2**20
        found["sqlite_highwater_mb"] = sqlite.sqlite3_memory_highwater(0) / 2**20
    return found


def pymalloc(path: Path) -> dict[str, Any]:
    """Python's small-object allocator (sys._debugmallocstats, written to fd 2): its 1 MiB
    arenas are mmapped apart from malloc's heaps and go back only when wholly empty."""
    saved = os.dup(2)
    with path.open("w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    found: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip("# ").strip()
        if "unused pools" in key:
            key = "bytes in unused pools"
        if key in found or key not in (
            "arenas allocated current",
            "bytes in allocated blocks",
            "bytes in available blocks",
            "bytes in unused pools",
        ):
            continue
        number = int(value.strip().replace(",", ""))
        found[key] = number if key.startswith("arenas") else number / 2**20
    return found


def main() -> int:
    out = Path(sys.argv[1])
    frames = int(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if frames:
        tracemalloc.start(frames)
    taken = [0]

    def dump(_signum: int, _frame: FrameType | None) -> None:
        taken[0] += 1
        name = f"snap{taken[0]}"
        gc.collect()
        if frames:
            tracemalloc.take_snapshot().dump(str(out / f"{name}.tm"))
        types = Counter(type(o).__qualname__ for o in gc.get_objects())
        probe = {
            "types": dict(types.most_common(300)),
            "c": c_memory(),
            "pymalloc": pymalloc(out / f"{name}.pymalloc"),
            "threads": threading.active_count(),
            "traced_mb": tracemalloc.get_traced_memory()[0] / 2**20 if frames else None,
        }
        (out / f"{name}.json").write_text(json.dumps(probe))
        (out / f"{name}.done").touch()

    trims = [0]

    def trim(_signum: int, _frame: FrameType | None) -> None:
        trims[0] += 1
        started = time.perf_counter()
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
        (out / f"trim{trims[0]}.done").write_text(f"{(time.perf_counter() - started) * 1000:.2f}")

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGUSR2, trim)
    from bot.cli import main as bot_main

    return bot_main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
