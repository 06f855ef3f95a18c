"""The KPI report cache: reused within its time, bounded however many windows are asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.db import create_db_engine
from bot.kpis.models_file import ModelsFile
from bot.kpis.service import CACHE_SECONDS, CACHE_WINDOWS, KpiService
from bot.kpis.window import Window
from bot.schema import init_schema


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'kpis.db'}")
    init_schema(engine)
    yield engine
    engine.dispose()


def test_a_report_is_reused_within_its_time_and_asked_again_after(engine: Engine) -> None:
    clock = Clock()
    service = KpiService(None, engine, ModelsFile(), clock=clock)
    try:
        first = service.report(Window.parse("1h"), budget=2.0)
        assert service.report(Window.parse("1h"), budget=2.0) is first
        clock.now += CACHE_SECONDS + 1
        assert service.report(Window.parse("1h"), budget=2.0) is not first
    finally:
        service.close()


def test_thousands_of_distinct_windows_keep_a_bounded_cache(engine: Engine) -> None:
    clock = Clock()
    service = KpiService(None, engine, ModelsFile(), clock=clock)
    try:
        for seconds in range(10, 10 + 4 * CACHE_WINDOWS):
            service.report(Window.parse(f"{seconds}s"), budget=2.0)
            clock.now += 0.01
        assert service.cached_windows() == CACHE_WINDOWS
        # The newest reports are the ones kept.
        newest = Window.parse(f"{9 + 4 * CACHE_WINDOWS}s")
        assert service.report(newest, budget=2.0) is service.report(newest, budget=2.0)
        # Expired reports go as soon as another is stored.
        clock.now += CACHE_SECONDS + 1
        service.report(Window.parse("7d"), budget=2.0)
        assert service.cached_windows() == 1
    finally:
        service.close()
