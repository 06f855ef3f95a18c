"""Resident memory of the bot over 100,000 alerts: does it stay flat as history grows?

Starts the bot (`python -m bot serve`, SQLite on local disk, the Slack stand-in, WARNING
logging) and sends it notifications of 10 alerts each from client threads, as a fleet would:
new groups firing, open groups sent again (Alertmanager's repeat, one alert of the group
replaced by a new one), and open groups resolved, so incidents, alerts, timeline events and
Slack messages accumulate as history. Every `--sample-every` notifications it waits until the
journal is applied and the outbox has drained (`--no-drain`: only the journal) and samples
VmRSS (/proc/PID/status) of the serving process and of each of its child processes (an
applier process, if there is one), separately and summed.

Prints a table (alerts sent, RSS) and the least-squares slope of the total over the second
half of the run, in MB per 10,000 alerts (flat is about 0).

Diagnosis (how the growth was found): `--probe DIR` runs the bot under bench/_traced_serve.py
and prints, per sample, glibc's malloc statistics, SQLite's allocator, pymalloc's arenas and
(at the end) the object types whose count grew most between the sample at `--baseline` and
the last; `--trim-probe` calls malloc_trim(0) in the bot after each sample and samples again;
`--tracemalloc DIR` adds tracemalloc (slow; RSS then includes its traces) and the allocation
sites that grew most.

    python -m bench.memory [--notifications 10000] [--alerts 10] [--sample-every 500]
                           [--no-drain] [--malloc-arena-max N] [--probe DIR [--trim-probe]]
                           [--tracemalloc DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.senders import encode, post_notifications
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import BotProcess, make_settings, settings_env, wait_until
from tests.support.payloads import alert, notification

ALERTNAMES = ("GpuXidError", "VLLMHighE2ELatency", "TritonQueueBacklog", "KServeNotReady", "OOMKilled")
SERVICES = tuple(f"model-{n}" for n in range(20))
MAX_OPEN = 300


class MemoryBot(BotProcess):
    """The bot process, optionally under the tracemalloc wrapper, with extra environment."""

    def __init__(
        self, *args: Any, extra_env: dict[str, str], probe_dir: Path | None, frames: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.extra_env = extra_env
        self.probe_dir = probe_dir
        self.frames = frames

    def start(self) -> MemoryBot:
        prefix = ["-m", "bot"]
        if self.probe_dir:
            prefix = ["-m", "bench._traced_serve", str(self.probe_dir), str(self.frames)]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *prefix, "serve", "--port", str(self.port)],
            env={**settings_env(self.settings), **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"bot exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=240, message="bot process")
        return self


@dataclass
class Group:
    number: int
    alertname: str
    service: str
    severity: str
    started: datetime
    pods: list[str]
    touched: int = 0


@dataclass
class Fleet:
    """Notifications as a fleet sends them; a group is not touched again within `spacing`
    notifications, so concurrent senders never reorder one group's firing and resolve."""

    alerts: int
    seed: int
    spacing: int = 64
    rng: random.Random = field(init=False)
    open: list[Group] = field(default_factory=list)
    groups: int = 0
    sent: int = 0
    resolved: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _body(self, group: Group, status: str) -> dict[str, Any]:
        items = [
            alert(
                group.alertname,
                status=status,
                starts_at=group.started,
                pod=pod,
                service=group.service,
                severity=group.severity,
                annotations={"summary": f"{group.alertname} on {group.service}", "description": "fleet"},
            )
            for pod in group.pods
        ]
        return notification(*items, group_key=f'{{}}:{{service="{group.service}",group="{group.number}"}}')

    def _new(self) -> Group:
        self.groups += 1
        n = self.groups
        group = Group(
            number=n,
            alertname=self.rng.choice(ALERTNAMES),
            service=self.rng.choice(SERVICES),
            severity="critical" if self.rng.random() < 0.2 else "warning",
            started=datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30),
            pods=[f"g{n}-pod{i}" for i in range(self.alerts)],
        )
        self.open.append(group)
        return group

    def next(self) -> dict[str, Any]:
        self.sent += 1
        ready = [g for g in self.open if self.sent - g.touched > self.spacing]
        roll = self.rng.random()
        if not ready or (roll < 0.4 and len(self.open) < MAX_OPEN):
            group = self._new()
            status = "firing"
        elif roll < 0.75 and len(self.open) < MAX_OPEN:
            group = self.rng.choice(ready)
            # A repeat: one pod of the group replaced by a new one (a restart elsewhere).
            group.pods[self.rng.randrange(len(group.pods))] = f"g{group.number}-pod{self.sent}"
            status = "firing"
        else:
            group = self.rng.choice(ready)
            self.open.remove(group)
            self.resolved += 1
            status = "resolved"
        group.touched = self.sent
        return self._body(group, status)


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> Iterator[int]:
    """Every descendant of `pid` (from /proc/*/stat's parent field)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current:
                yield child
                frontier.append(child)


def pending(db: Path) -> tuple[int, int]:
    """Unapplied journal entries (the journal file beside the database, past the cursor) and
    unfinished outbox jobs."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        through = connection.execute("SELECT max(applied_through) FROM intake_cursor").fetchone()[0] or 0
        jobs = connection.execute(
            "SELECT count(*) FROM outbox_jobs WHERE status IN ('pending', 'running')"
        ).fetchone()[0]
    journal_file = Path(f"{db}.intake")
    journal = 0
    if journal_file.exists():
        with sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True, timeout=30) as connection:
            journal = connection.execute(
                "SELECT count(*) FROM intake_journal WHERE id > ?", (through,)
            ).fetchone()[0]
    return int(journal), int(jobs)


def pss_kb(pid: int) -> int:
    """Proportional set size: resident pages, shared ones divided among the processes that
    share them (the two processes of `serve` share the interpreter and its libraries)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def probe(bot: MemoryBot, probe_dir: Path, number: int) -> dict[str, Any]:
    """The bot's own view of its memory (bench/_traced_serve.py), after a full collection."""
    assert bot.process is not None
    bot.process.send_signal(signal.SIGUSR1)
    wait_until(lambda: (probe_dir / f"snap{number}.done").exists(), timeout=300, message="probe")
    found: dict[str, Any] = json.loads((probe_dir / f"snap{number}.json").read_text())
    return found


def report_growth(probe_dir: Path, first: int, last: int, top: int) -> None:
    """What grew between two probes: object counts by type, and (with tracemalloc) the
    allocation sites whose live memory grew most."""
    types_old = json.loads((probe_dir / f"snap{first}.json").read_text())["types"]
    types_new = json.loads((probe_dir / f"snap{last}.json").read_text())["types"]
    grown = sorted(
        ((name, count - types_old.get(name, 0)) for name, count in types_new.items()),
        key=lambda item: -item[1],
    )
    print(f"\nobject types whose count grew most between probe {first} and probe {last}:")
    for name, diff in grown[:top]:
        print(f"  {diff:+8d} {name} (now {types_new[name]})")
    if not (probe_dir / f"snap{first}.tm").exists():
        return
    keep = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*"),
    )
    old = tracemalloc.Snapshot.load(str(probe_dir / f"snap{first}.tm")).filter_traces(keep)
    new = tracemalloc.Snapshot.load(str(probe_dir / f"snap{last}.tm")).filter_traces(keep)
    total_old = sum(s.size for s in old.statistics("filename"))
    total_new = sum(s.size for s in new.statistics("filename"))
    print(
        f"traced Python memory: probe {first} {total_old / 2**20:.1f} MB,"
        f" probe {last} {total_new / 2**20:.1f} MB"
    )
    print(f"top {top} allocation sites by growth:")
    for stat in new.compare_to(old, "traceback")[:top]:
        print(f"  {stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+8d} blocks")
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print(f"      {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=10, help="alerts per notification")
    parser.add_argument("--sample-every", type=int, default=500, help="notifications between samples")
    parser.add_argument("--threads", type=int, default=8, help="concurrent senders")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--no-drain", action="store_true", help="sample without waiting for the outbox (a backlog builds)"
    )
    parser.add_argument("--malloc-arena-max", type=int, default=0, help="MALLOC_ARENA_MAX for the bot")
    parser.add_argument(
        "--probe",
        type=Path,
        default=None,
        help="diagnose: malloc/SQLite/object counts per sample, in this dir",
    )
    parser.add_argument(
        "--trim-probe",
        action="store_true",
        help="with --probe: after each sample call malloc_trim(0) in the bot and sample again",
    )
    parser.add_argument(
        "--tracemalloc", type=Path, default=None, help="diagnose: as --probe, with tracemalloc snapshots"
    )
    parser.add_argument("--baseline", type=int, default=2, help="sample whose snapshot the diff starts at")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)

    extra_env = {"INCIDENT_BOT_LOG_LEVEL": "WARNING"}
    if args.malloc_arena_max:
        extra_env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    fleet = Fleet(alerts=args.alerts, seed=args.seed)
    samples: list[tuple[int, int, int, dict[int, int]]] = []
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
        workdir = Path(tmp)
        settings = make_settings(workdir, slack.url, slack_post_interval=0.0, slack_timeout=10.0)
        probe_dir = args.tracemalloc or args.probe
        bot = MemoryBot(
            settings,
            workdir / "bot.log",
            extra_env=extra_env,
            probe_dir=probe_dir,
            frames=12 if args.tracemalloc else 0,
        ).start()
        assert bot.process is not None
        pid = bot.process.pid
        database = workdir / "bot.db"
        started = time.monotonic()

        def sample(alerts: int, *, drain: bool) -> None:
            wait_until(lambda: pending(database)[0] == 0, timeout=600, message="journal applied")
            if drain:
                wait_until(lambda: pending(database)[1] == 0, timeout=900, message="outbox drained")
            main_kb = rss_kb(pid)
            kids = {child: rss_kb(child) for child in children(pid)}
            samples.append((alerts, main_kb, main_kb + sum(kids.values()), kids))
            kid_text = ", ".join(f"pid {c}: {kb / 1024:.1f}" for c, kb in kids.items()) or "-"
            pss = sum(pss_kb(p) for p in (pid, *kids)) / 1024
            print(
                f"{alerts:>9,} {main_kb / 1024:>10.1f} {(main_kb + sum(kids.values())) / 1024:>10.1f}"
                f" {pss:>9.1f}   {kid_text:<30} {pending(database)[1]:>7} {time.monotonic() - started:>7.0f}",
                flush=True,
            )
            if probe_dir:
                found = probe(bot, probe_dir, len(samples))
                c = found["c"]
                traced = f", Python traced {found['traced_mb']:.1f}" if found["traced_mb"] is not None else ""
                print(
                    f"{'':>9} malloc in use {c.get('malloc_in_use_mb', 0):.1f}, free in heap"
                    f" {c.get('malloc_free_in_heap_mb', 0):.1f}, mmapped {c.get('malloc_mmapped_mb', 0):.1f};"
                    f" SQLite {c.get('sqlite_mb', 0):.1f}; {found['threads']} threads{traced}",
                    flush=True,
                )
                py = found["pymalloc"]
                print(
                    f"{'':>9} pymalloc: {py.get('arenas allocated current', 0)} arenas of 1 MiB,"
                    f" {py.get('bytes in allocated blocks', 0):.1f} in blocks in use,"
                    f" {py.get('bytes in available blocks', 0):.1f} free in used pools,"
                    f" {py.get('bytes in unused pools', 0):.1f} in empty pools",
                    flush=True,
                )
                if args.trim_probe:
                    os.kill(pid, signal.SIGUSR2)
                    done = probe_dir / f"trim{len(samples)}.done"
                    wait_until(done.exists, timeout=60, message="malloc_trim")
                    print(
                        f"{'':>9} after malloc_trim(0) ({done.read_text()} ms): {rss_kb(pid) / 1024:.1f} MB",
                        flush=True,
                    )

        try:
            arena = f"; MALLOC_ARENA_MAX={args.malloc_arena_max}" if args.malloc_arena_max else ""
            when = "not waiting for" if args.no_drain else "sampled after"
            print(
                f"{args.notifications:,} notifications of {args.alerts} alerts, {args.threads} senders,"
                f" {when} the outbox drains; bot pid {pid}{arena}"
            )
            header = f"{'alerts':>9} {'main MB':>10} {'total MB':>10} {'PSS MB':>9}   {'children MB':<30}"
            print(f"{header} {'outbox':>7} {'secs':>7}")
            sample(0, drain=True)
            sent = 0
            while sent < args.notifications:
                count = min(args.sample_every, args.notifications - sent)
                post_notifications(
                    bot.url,
                    encode([fleet.next() for _ in range(count)]),
                    threads=args.threads,
                    in_process=True,
                )
                sent += count
                sample(sent * args.alerts, drain=not args.no_drain)
            if args.no_drain:
                sample(sent * args.alerts, drain=True)
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                incidents = connection.execute("SELECT count(*) FROM incidents").fetchone()[0]
                alerts = connection.execute("SELECT count(*) FROM alerts").fetchone()[0]
        finally:
            bot.stop()
        posts = len(slack.calls("chat.postMessage"))
    last = samples[-2] if args.no_drain else samples[-1]
    half = [(a / 10_000, total / 1024) for a, _, total, _ in samples if a >= last[0] / 2 and a > 0]
    if args.no_drain:
        half = half[:-1]
    print(
        f"\nhistory: {incidents:,} incidents ({fleet.resolved:,} resolved by the fleet),"
        f" {alerts:,} alert rows, {posts:,} chat.postMessage calls; {time.monotonic() - started:.0f} s"
    )
    print(
        f"RSS total: start {samples[0][2] / 1024:.1f} MB, after {last[0]:,} alerts {last[2] / 1024:.1f} MB"
        + (f", outbox drained {samples[-1][2] / 1024:.1f} MB" if args.no_drain else "")
        + f", max {max(s[2] for s in samples) / 1024:.1f} MB"
    )
    print(f"slope over the second half: {slope(half):+.2f} MB per 10,000 alerts")
    if probe_dir:
        report_growth(probe_dir, args.baseline, len(samples), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
