"""Replicas racing for one digest schedule point: exactly one claims it and enqueues the
digest, on SQLite and on PostgreSQL (where the unique key, not a lock, decides the race)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.db import create_db_engine
from bot.kpis.digest import DIGEST_JOB, DigestSchedule, claim_due
from bot.schema import init_schema
from tests.support.postgres import PostgresServer

REPLICAS = 6


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = f"bot_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


def test_one_replica_claims_each_schedule_point(database_url: str) -> None:
    schedule = DigestSchedule.parse("mon 09:00 Europe/Berlin")
    engines = [create_db_engine(database_url) for _ in range(REPLICAS)]
    init_schema(engines[0])
    monday = datetime(2026, 12, 7, 8, 0, 5, tzinfo=UTC)  # 09:00:05 in Berlin
    barrier = threading.Barrier(REPLICAS)
    results: list[bool] = []

    def replica(index: int) -> None:
        barrier.wait()
        results.append(claim_due(engines[index], schedule, worker=f"replica-{index}", now=monday))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(REPLICAS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [False] * (REPLICAS - 1) + [True]
    # A restart later the same morning finds the claim; next Monday is a new point.
    assert not claim_due(engines[0], schedule, worker="restarted", now=monday.replace(minute=30))
    assert claim_due(engines[0], schedule, worker="restarted", now=datetime(2026, 12, 14, 8, 1, tzinfo=UTC))
    # A bot that was down all Monday does not post Monday's digest on Tuesday.
    assert not claim_due(engines[0], schedule, worker="late", now=datetime(2026, 12, 22, 12, 0, tzinfo=UTC))
    with engines[0].connect() as conn:
        claims = conn.execute(sa.text("SELECT point_key FROM kpi_digest_claims ORDER BY id")).scalars().all()
        jobs = conn.execute(
            sa.text("SELECT count(*) FROM outbox_jobs WHERE kind = :k"), {"k": DIGEST_JOB}
        ).scalar()
    assert claims == [
        "mon 09:00 Europe/Berlin@2026-12-07T08:00:00+00:00",
        "mon 09:00 Europe/Berlin@2026-12-14T08:00:00+00:00",
    ]
    assert jobs == 2
    for engine in engines:
        engine.dispose()
