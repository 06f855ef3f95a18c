"""Database engine and transactions, for SQLite (the default) and PostgreSQL.

SQLite needs care to be both durable and safe under concurrent writers: WAL journal so
readers never block, `synchronous=FULL` so a 200 to Alertmanager survives a kill -9 or a
power cut, a busy timeout instead of instant "database is locked" errors, and `BEGIN
IMMEDIATE` on every transaction so two writers serialise at the start of a transaction
rather than deadlocking when a read lock is upgraded halfway through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session

from bot.write_turn import WriteTurn

__all__ = [
    "UTCDateTime",
    "create_db_engine",
    "is_sqlite",
    "transaction",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones and PostgreSQL's
    `timestamp` would otherwise hand back naive values that compare wrongly with aware ones."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    # A plain libpq-style URL means psycopg 3 (SQLAlchemy's default would be psycopg2).
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url.removeprefix(plain)
    connect_args: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Connections cross threads (FastAPI's threadpool, workers); SQLite's own locking
        # with the busy timeout below keeps that safe.
        connect_args = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}
    engine = sa.create_engine(url, echo=echo, connect_args=connect_args, **kwargs)
    if is_sqlite(engine):
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own
        # implicit BEGIN is deferred and cannot be made IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Writers take a turn before asking SQLite for its write lock (bot/write_turn.py): SQLite's
    # busy handler polls with sleeps growing to 100 ms, and a writer committing back to back in
    # another process (the intake applier in a storm) would starve the outbox.
    turn = WriteTurn(_turn_file(engine))

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # IMMEDIATE: a writer takes the write lock up front (waiting in the busy handler),
        # never failing to upgrade a read lock halfway. `reading()` asks for DEFERRED.
        if connection.get_execution_options().get("sqlite_deferred", False):
            connection.exec_driver_sql("BEGIN DEFERRED")
            return
        # Bounded like the busy timeout; past it, SQLite's own wait decides.
        if turn.acquire(timeout=30):
            connection.info["write_turn"] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _end_turn(connection)
            raise

    def _end_turn(connection: sa.Connection) -> None:
        if connection.info.pop("write_turn", False):
            turn.release()

    event.listen(engine, "commit", _end_turn)
    event.listen(engine, "rollback", _end_turn)


def _turn_file(engine: Engine) -> Path | None:
    """`<database>.turn` beside a database file; None in memory (one process only)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}.turn")


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A unit of work that only reads. On SQLite its transaction is deferred: in WAL mode it
    reads a snapshot beside the writer, where `transaction` would queue for the single write
    lock behind intake, the outbox and every other writer (what made a slash command's
    answer wait during a storm). Anything it tries to write is rolled back."""
    bind = engine.execution_options(sqlite_deferred=True) if is_sqlite(engine) else engine
    # Closed, never committed: what was read stays loaded on the objects (a rollback would
    # expire them), and the pool rolls the connection back.
    with Session(bind, expire_on_commit=False) as session:
        yield session


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
