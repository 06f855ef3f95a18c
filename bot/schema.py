"""Which schema revision the database is at, and whether this version of the bot may run on it.

Operators who run migrations as a Kubernetes Job before a rollout (`incident-bot db upgrade`)
start `serve` with migrations off; a rollback to an older image must then refuse to run on
the newer schema rather than write rows it does not understand. Both cases end `serve` at
start with one line naming what to do.
"""

from __future__ import annotations

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.config import Settings
from bot.db import MIGRATIONS, create_db_engine, migrate, register_tables
from bot.errors import ConfigError

__all__ = ["check_schema_at_start", "current_revision", "head_revision", "prepare_schema", "upgrade"]


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database; None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _known(revision: str) -> bool:
    return revision in {script.revision for script in _scripts().walk_revisions()}


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest revision this version knows: (revision before, revision after).
    Refuses a database already past that, instead of failing inside Alembic."""
    before = current_revision(engine)
    _refuse_newer(before)
    register_tables()
    migrate(engine)
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
