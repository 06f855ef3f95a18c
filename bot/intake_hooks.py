"""Wiring of intake: how a journaled notification is applied (grouping rules, routing, the
jobs an opened incident gets, storm detection), where the applier runs, and what follows
once a notification is applied (metrics, waking the outbox). Takes the parts it needs, not
the composition root, so nothing here imports bot/server.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy.engine import Engine

from bot.config import Settings
from bot.config_files import BotConfig
from bot.flows.opening import Connected
from bot.intake_applier import Applied, JournalApplier
from bot.intake_journal import FileSink, TableSink, journal_file_path, open_journal_reader
from bot.intake_process import ApplierProcess, ApplierSpec
from bot.intake_rules import build_apply
from bot.intake_status import journal_status
from bot.intake_writer import ApplierRunner, IntakeWriter, ThreadApplier
from bot.metrics import BotMetrics

__all__ = ["build_intake"]

# The applier reports every few milliseconds in a storm, each report with new jobs; most of
# them are for channels busy at Slack's pace, and every wake-up costs a claim query. So at
# most one wake-up per interval: the first at once, the rest folded into one at its end.
WAKE_EVERY_SECONDS = 0.1


class _Throttled:
    """Calls `action` at once, then at most once per `interval` (on the event loop)."""

    def __init__(self, action: Callable[[], None], interval: float) -> None:
        self._action, self._interval = action, interval
        self._last = -interval
        self._pending: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last + self._interval - loop.time()
        if wait <= 0:
            self._fire()
        else:
            self._pending = loop.call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = asyncio.get_running_loop().time()
        self._action()


def build_intake(
    engine: Engine,
    settings: Settings,
    config: BotConfig,
    *,
    connected: Connected,
    metrics: BotMetrics,
    wake: Callable[[], None],
    owner: str,
) -> IntakeWriter:
    wake_outbox = _Throttled(wake, WAKE_EVERY_SECONDS)

    def applied(outcomes: list[Applied]) -> None:
        jobs = 0
        for outcome in outcomes:
            if outcome.error is not None:
                continue
            metrics.notifications.labels("duplicate" if outcome.duplicate else "accepted").inc()
            for severity in outcome.opened:
                metrics.incidents_opened.labels(severity).inc()
            for resolution in outcome.resolved:
                metrics.incidents_resolved.labels(resolution.severity).inc()
                metrics.time_to_resolve.labels(resolution.severity, resolution.service).observe(
                    resolution.seconds
                )
            jobs += outcome.jobs
        if jobs:
            wake_outbox()

    journal_path = journal_file_path(settings.database_url)
    runner: ApplierRunner
    if settings.intake_applier == "process":
        runner = ApplierProcess(ApplierSpec.of(settings, connected, owner))
    else:
        apply = build_apply(config.intake, connected, post_interval=settings.slack_post_interval)
        journal_file = open_journal_reader(journal_path) if journal_path is not None else None
        runner = ThreadApplier(JournalApplier(engine, apply, owner, journal_file))
    reader = open_journal_reader(journal_path) if journal_path is not None else None

    def state() -> tuple[int, int]:
        status = journal_status(engine, reader)
        return status.pending, status.failures

    metrics.watch_intake(state, runner.alive)
    if journal_path is None:
        return IntakeWriter(TableSink(engine, owner), runner, applied)
    return IntakeWriter(FileSink(journal_path), runner, applied, reader)
