"""`reading()` reads beside a writer on SQLite instead of queuing for the write lock, and
never keeps what it wrote. A real SQLite file in WAL mode."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select

from bot.db import create_db_engine, reading, transaction
from bot.incidents.models import Incident
from bot.schema import prepare_schema


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    prepare_schema(engine, migrate_on_start=True)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction(engine) as session:  # BEGIN IMMEDIATE: holds the write lock
            session.exec(sa.text("UPDATE alembic_version SET version_num = version_num"))  # type: ignore[call-overload]
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with reading(engine) as session:
            assert session.exec(select(Incident)).all() == []
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join()
        engine.dispose()
    # A queued reader would wait for `release` (10 s) or its 30 s busy timeout.
    assert waited < 5, f"the read waited {waited:.1f} s for the writer"
