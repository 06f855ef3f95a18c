"""The schema: every table registered with SQLModel's metadata, migrated (Alembic), and checked.

Apart from bot/db.py (engines and transactions) because it imports every module that defines
tables, which themselves build on bot/db.py; with both in one module they import each other.

Operators who run migrations as a Kubernetes Job before a rollout (`incident-bot db upgrade`)
start `serve` with migrations off; a rollback to an older image must then refuse to run on
the newer schema rather than write rows it does not understand. Both cases end `serve` at
start with one line naming what to do.

`serve` runs that check in a short-lived process of its own (`start_schema_check`), beside its
own start, and never imports Alembic itself: Alembic, Mako and the migration scripts are about
10 MB of resident memory that the serving process would otherwise keep for its whole life
(bench/memory.py; BENCHMARKS.md). Every Alembic import here is therefore inside the function
that needs it.
"""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.config import Settings
from bot.db import create_db_engine, is_sqlite
from bot.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "MIGRATIONS",
    "check_schema_at_start",
    "current_revision",
    "head_revision",
    "init_schema",
    "migrate",
    "prepare_schema",
    "register_tables",
    "start_schema_check",
    "upgrade",
]


def register_tables() -> None:
    """Import every module that defines tables, so SQLModel's metadata knows them all."""
    from bot import intake_journal as _intake_journal  # noqa: F401
    from bot import outbox as _outbox  # noqa: F401
    from bot import storm as _storm  # noqa: F401
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

    config = _config()
    with engine.begin() as connection:
        if not is_sqlite(engine):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def init_schema(engine: Engine) -> None:
    """The schema at its newest revision (kept as the name the rest of the code uses)."""
    register_tables()
    migrate(engine)


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database; None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _known(revision: str) -> bool:
    return revision in {script.revision for script in _scripts().walk_revisions()}


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest revision this version knows: (revision before, revision after).
    Refuses a database already past that, instead of failing inside Alembic."""
    before = current_revision(engine)
    _refuse_newer(before)
    init_schema(engine)
    return before, head_revision()


def _refuse_newer(revision: str | None) -> None:
    if revision is not None and not _known(revision):
        raise ConfigError(
            f"database schema is at revision {revision}, newer than this incident-bot knows "
            f"(newest {head_revision()}): run a newer incident-bot"
        )


def prepare_schema(engine: Engine, *, migrate_on_start: bool) -> None:
    """At start: migrate (the default), or, with migrations run by the operator, check the
    database is exactly at this version's revision."""
    if migrate_on_start:
        upgrade(engine)
        return
    revision = current_revision(engine)
    _refuse_newer(revision)
    head = head_revision()
    if revision != head:
        raise ConfigError(
            f"database schema is at revision {revision or 'none (empty database)'}, this incident-bot "
            f"needs {head}: run `incident-bot db upgrade` or set INCIDENT_BOT_MIGRATE_ON_START=true"
        )


def check_schema_at_start(settings: Settings) -> None:
    """`serve`'s check before the server starts, so a schema problem ends it with one line
    rather than a failed lifespan inside uvicorn."""
    engine = create_db_engine(settings.database_url)
    try:
        prepare_schema(engine, migrate_on_start=settings.migrate_on_start)
    except (OperationalError, DBAPIError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(f"database unreachable at INCIDENT_BOT_DATABASE_URL: {reason}") from exc
    finally:
        engine.dispose()


# What the check process runs: the settings arrive pickled on its stdin.
_CHECK_COMMAND = "from bot.schema import _check_main; _check_main()"


def start_schema_check(settings: Settings) -> subprocess.Popen[bytes]:
    """`check_schema_at_start` in a process of its own; `wait()` gives 0 when the schema is
    ready, else the exit code `serve` should end with (the one-line reason is on stderr)."""
    process = subprocess.Popen([sys.executable, "-c", _CHECK_COMMAND], stdin=subprocess.PIPE)
    assert process.stdin is not None
    # A process that died at once cannot be written to: its exit code says why.
    with contextlib.suppress(BrokenPipeError), process.stdin:
        pickle.dump((sys.path, settings), process.stdin)
    return process


def _check_main() -> None:
    from bot.logs import configure_logging

    # Trusted: written by `serve` on a pipe only the two processes hold.
    sys.path[:], settings = pickle.load(sys.stdin.buffer)  # noqa: S301
    configure_logging(settings.log_level, settings.log_format)
    try:
        check_schema_at_start(settings)
    except ConfigError as exc:
        print(f"incident-bot: {exc.message}", file=sys.stderr)
        sys.exit(2)
