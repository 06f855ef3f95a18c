"""bot/heap.py on glibc (Debian, as the image and CI run): the arena cap is accepted, a trim
gives back the free pages a burst left inside the heap, and the trimming thread runs until
stopped."""

from __future__ import annotations

import threading

from bot import heap


def test_the_arena_cap_is_accepted() -> None:
    assert heap.limit_arenas() is True


def test_a_trim_after_a_burst_gives_free_heap_pages_back() -> None:
    # A burst of mid-sized blocks (malloc'd, not Python's small-object allocator), most of
    # them freed while every 16th stays alive, so the free space is inside the heap, not at
    # its top where glibc would return it by itself.
    blocks = [bytes(2048) for _ in range(40_000)]
    survivors = blocks[::16]
    del blocks
    assert heap.trim() is True
    assert len(survivors) == 2500


def test_trimming_runs_in_a_daemon_thread_until_stopped() -> None:
    stop = threading.Event()
    thread = heap.start_trimming(interval=0.01, stop=stop)
    assert thread is not None
    assert thread.daemon
    assert thread.name == "malloc-trim"
    thread.join(timeout=0.2)
    assert thread.is_alive()  # many trims later, still running
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
