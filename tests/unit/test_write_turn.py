"""Writers to one SQLite database take turns across processes (bot/write_turn.py): a process
committing back to back must not shut out another process's writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bot.write_turn import WriteTurn

OTHER_PROCESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bot.write_turn import WriteTurn
    turn = WriteTurn(Path(sys.argv[1]))
    started = time.monotonic()
    taken = turn.acquire(timeout=float(sys.argv[2]))
    print(f"{taken} {time.monotonic() - started:.3f}", flush=True)
    if taken:
        turn.release()
    """
)


def _other_process(lock: Path, timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, str(lock), str(timeout)], stdout=subprocess.PIPE, text=True
    )


def _answer(process: subprocess.Popen[str]) -> tuple[bool, float]:
    out, _ = process.communicate(timeout=30)
    taken, waited = out.split()
    return taken == "True", float(waited)


def test_another_process_waits_for_the_turn_and_gets_it_when_released(tmp_path: Path) -> None:
    lock = tmp_path / "bot.db.turn"
    turn = WriteTurn(lock)
    assert turn.acquire(timeout=1)
    other = _other_process(lock, timeout=20)
    time.sleep(1.0)  # the other process is waiting meanwhile
    turn.release()
    taken, waited = _answer(other)
    assert taken
    assert waited >= 0.5, "the other process took the turn while this one held it"


def test_a_turn_never_released_times_out_instead_of_waiting_forever(tmp_path: Path) -> None:
    lock = tmp_path / "bot.db.turn"
    turn = WriteTurn(lock)
    assert turn.acquire(timeout=1)
    try:
        taken, waited = _answer(_other_process(lock, timeout=0.3))
    finally:
        turn.release()
    assert not taken
    assert waited >= 0.3


def test_a_process_that_commits_back_to_back_lets_another_process_in(tmp_path: Path) -> None:
    """The intake applier in a storm: transactions one after another with no pause between."""
    lock = tmp_path / "bot.db.turn"
    turn = WriteTurn(lock)
    other = _other_process(lock, timeout=20)
    deadline = time.monotonic() + 20
    while other.poll() is None and time.monotonic() < deadline:
        assert turn.acquire(timeout=1)
        time.sleep(0.02)  # a 20 ms transaction
        turn.release()
        time.sleep(0.001)  # its commit's fsync, after the turn ends
    taken, waited = _answer(other)
    assert taken, "the other process never got a turn"
    # It looks again within 2 ms, so it finds one of the 1 ms gaps within a few transactions;
    # SQLite's busy handler alone (sleeps growing to 100 ms) would miss them for seconds.
    assert waited < 5, f"the other process waited {waited:.1f} s for a turn"


def test_threads_of_one_process_take_turns_and_may_nest(tmp_path: Path) -> None:
    turn = WriteTurn(tmp_path / "bot.db.turn")
    assert turn.acquire(timeout=1)
    assert turn.acquire(timeout=1)  # the same thread again: a nested transaction's turn
    turn.release()
    turn.release()
    assert turn.acquire(timeout=1)
    turn.release()
