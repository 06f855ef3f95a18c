"""The Alembic migrations build exactly the schema the models describe, so a database made
by an older version upgrades to what the code expects."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.db import create_db_engine
from bot.schema import init_schema, migrate, register_tables


def schema_drift(engine: Engine) -> list[object]:
    register_tables()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    init_schema(engine)
    assert schema_drift(engine) == []
    engine.dispose()


def test_migrating_again_changes_nothing_and_keeps_data(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO incidents (receiver, group_key, status, severity, severity_manual, title,"
                " common_labels, common_annotations, truncated_alerts, manual_resolve, created_at,"
                " started_at, updated_at) VALUES ('r', 'g', 'triggered', 'warning', 0, 't', '{}', '{}',"
                " 0, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 1
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert version is not None
    engine.dispose()
