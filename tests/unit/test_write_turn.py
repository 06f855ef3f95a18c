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
    print(f"{taken} {time.monotonic() - started:.3f} {started:.6f}", flush=True)
    if taken:
        turn.release()
    """
)


def _other_process(lock: Path, timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, str(lock), str(timeout)], stdout=subprocess.PIPE, text=True
    )


def _answer(process: subprocess.Popen[str]) -> tuple[bool, float]:
    taken, waited, _ = _report(process)
    return taken, waited


def _report(process: subprocess.Popen[str]) -> tuple[bool, float, float]:
    """Whether the other process got the turn, how long it waited, and when it started to
    (time.monotonic(): the machine's clock, the same in every process)."""
    out, _ = process.communicate(timeout=30)
    taken, waited, started = out.split()
    return taken == "True", float(waited), float(started)


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
    released: list[float] = []
    while other.poll() is None and time.monotonic() < deadline:
        assert turn.acquire(timeout=1)
        time.sleep(0.02)  # a 20 ms transaction, and the next one at once
        turn.release()
        released.append(time.monotonic())
    taken, waited, started = _report(other)
    assert taken, "the other process never got a turn"
    # Retaking the turn at once, this process lets the waiting one go first: it gets the turn
    # at the end of the transaction under way, or the next. Without that courtesy this
    # process won most races (5-7 transactions here; with SQLite's busy handler alone, more).
    ours_meanwhile = sum(1 for at in released if started < at < started + waited)
    assert ours_meanwhile <= 3, f"{ours_meanwhile} transactions of this process went first"


def test_threads_of_one_process_take_turns_and_may_nest(tmp_path: Path) -> None:
    turn = WriteTurn(tmp_path / "bot.db.turn")
    assert turn.acquire(timeout=1)
    assert turn.acquire(timeout=1)  # the same thread again: a nested transaction's turn
    turn.release()
    turn.release()
    assert turn.acquire(timeout=1)
    turn.release()
