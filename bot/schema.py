"""The schema: every table registered with SQLModel's metadata and migrated (Alembic) at start.

Apart from bot/db.py (engines and transactions) because it imports every module that defines
tables, which themselves build on bot/db.py; with both in one module they import each other.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from bot.db import is_sqlite

__all__ = ["MIGRATIONS", "init_schema", "migrate", "register_tables"]


def register_tables() -> None:
    """Import every module that defines tables, so SQLModel's metadata knows them all."""
    from bot import outbox as _outbox  # noqa: F401
    from bot.actions import models as _action_models  # noqa: F401
    from bot.incidents import models as _incident_models  # noqa: F401
    from bot.kpis import tables as _kpi_tables  # noqa: F401
    from bot.registry import aliases as _alias_moves  # noqa: F401
    from bot.slack import home_viewers as _home_viewers  # noqa: F401


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant shared by every replica: serialises concurrent upgrades on PostgreSQL.
_MIGRATION_LOCK = 0x1BC1DE47


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic), at start. Replicas starting together
    take turns under a PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE serialises them."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if not is_sqlite(engine):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def init_schema(engine: Engine) -> None:
    """The schema at its newest revision (kept as the name the rest of the code uses)."""
    register_tables()
    migrate(engine)
