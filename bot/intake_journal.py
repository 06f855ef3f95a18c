"""The intake journal: every accepted Alertmanager notification, durably written before its
200 and applied to incidents exactly once, later, by the journal applier.

Why a journal: applying a notification (grouping, alerts, timeline, outbox jobs) is the
slow part of intake, and under a storm it would make Alertmanager wait and time out. The
journal row is one small insert, committed for many concurrent requests at once
(bot/intake_writer.py), so a 200 still means "survives a kill -9" while the apply catches up.

Where it lives depends on the database:
- PostgreSQL: a table of the bot's database (`JournalEntry`), shared by the replicas (any of
  them adopts the entries of one that died); each entry is deleted in the transaction that
  applies it.
- SQLite: a file of its own beside the database (`<database>.intake`, table `FILE_JOURNAL`).
  SQLite has one writer at a time per file: in the same file, every journal commit (the
  200s) would queue behind the applier's incident transactions. Entries there are applied in
  id order and the database records how far (`IntakeCursor`, in the same transaction as the
  incidents), so a kill -9 anywhere neither loses nor repeats one; applied entries are
  deleted from the file afterwards. The file is created at start (it is a local buffer, not
  part of the schema that `incident-bot db upgrade` manages).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Column, Field, SQLModel

from bot.db import UTCDateTime, create_db_engine, utcnow

__all__ = [
    "FILE_JOURNAL",
    "FileSink",
    "IntakeCursor",
    "IntakeFailure",
    "JournalEntry",
    "JournalSink",
    "TableSink",
    "journal_file_path",
    "open_journal_file",
    "open_journal_reader",
]


class JournalEntry(SQLModel, table=True):
    __tablename__ = "intake_journal"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    # Process that wrote it (bot.outbox_leases.process_identity): it applies its own entries
    # first; any replica adopts entries left unapplied for long (their writer died).
    owner: str
    body: str = Field(sa_column=Column(sa.Text(), nullable=False))
    attempts: int = 0
    # Set when applying failed for a reason retrying cannot fix (kept for the operator).
    error: str | None = Field(default=None, sa_column=Column(sa.Text()))


class IntakeFailure(SQLModel, table=True):
    """A notification that was acknowledged but can never be applied (the database refuses a
    value of it): kept whole, with the reason, for the operator (`incident-bot journal`)."""

    __tablename__ = "intake_failures"
    # Ids are what operators type (`journal retry 3`): never reused for a later failure.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(sa_column=Column(sa.BigInteger(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    failed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    body: str = Field(sa_column=Column(sa.Text(), nullable=False))
    error: str = Field(sa_column=Column(sa.Text(), nullable=False))


class IntakeCursor(SQLModel, table=True):
    """SQLite only: the last journal-file entry applied (one row), moved in the transaction
    that applies it."""

    __tablename__ = "intake_cursor"

    id: int | None = Field(default=None, primary_key=True)
    applied_through: int = Field(sa_column=Column(sa.BigInteger(), nullable=False))


_file_metadata = sa.MetaData()
FORGET_BATCH = 256

#: AUTOINCREMENT: ids are never reused after the newest entries are deleted, so an id at or
#: below the cursor is always one that was applied.
FILE_JOURNAL = sa.Table(
    "intake_journal",
    _file_metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text()),
    sqlite_autoincrement=True,
)


def journal_file_path(database_url: str) -> Path | None:
    """The journal file of a SQLite database file; None for a server database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise ValueError("the intake journal needs a SQLite database file, not an in-memory database")
    return Path(f"{url.database}.intake")


def open_journal_file(path: Path) -> Engine:
    engine = create_db_engine(f"sqlite:///{path}")
    _file_metadata.create_all(engine)
    return engine


def open_journal_reader(path: Path) -> Engine:
    """The applier's view of the journal file: reads only, in plain (deferred) transactions.
    The bot's usual engine begins every transaction IMMEDIATE, which takes SQLite's write
    lock even to read, and would make every append wait for the applier's reads."""
    open_journal_file(path).dispose()
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only=ON")

    return engine


class JournalSink(Protocol):
    """Where the journal writer appends: one durable transaction per call, the new entries'
    ids in the order of `bodies`."""

    #: The `Applied.journal` of its entries.
    kind: str
    #: Whether an append is cheap enough to run on the event loop (a local file's insert and
    #: fsync) rather than on the writer thread (a network round trip).
    inline: bool

    def append(self, bodies: Sequence[str]) -> list[int]: ...

    def applied_through(self, entry_id: int) -> None:
        """Entries up to this id are applied (reported by the applier) and may be deleted."""

    def close(self) -> None: ...


class TableSink:
    """The database's journal table (PostgreSQL)."""

    kind = "table"
    inline = False

    def __init__(self, engine: Engine, owner: str) -> None:
        self.engine, self.owner = engine, owner

    def append(self, bodies: Sequence[str]) -> list[int]:
        table = JournalEntry.__table__  # type: ignore[attr-defined]
        now = utcnow()
        with self.engine.begin() as connection:
            # One statement for the whole batch (SQLAlchemy's "insertmanyvalues").
            rows = connection.execute(
                sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
                [{"received_at": now, "owner": self.owner, "body": body, "attempts": 0} for body in bodies],
            ).all()
        return [int(row.id) for row in rows]

    def applied_through(self, entry_id: int) -> None:
        pass  # the applier deletes each entry as it applies it

    def close(self) -> None:
        pass


class FileSink:
    """SQLite's journal file. Its only writer (the applier only reads it), so an append never
    waits for a lock: one INSERT of the batch and an fsync, through the sqlite3 module
    directly because this is the hot path of a storm. Applied entries are deleted in the
    same transaction as a later append, a few hundred at a time."""

    kind = "file"
    # A batch's insert and fsync take about 0.2 ms here (p99 6 ms, BENCHMARKS.md), less than
    # handing it to a thread and back: the thread had to win the interpreter back from the
    # event loop each time (up to the 5 ms switch interval), and every request waits for the
    # commit anyway.
    inline = True

    def __init__(self, path: Path) -> None:
        open_journal_file(path).dispose()  # the table, created the usual way
        self._forget = 0  # applied through this id: delete at the next append
        self._forgotten = 0
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a 200 survives a power cut, not only a kill -9
        self._db.execute("PRAGMA busy_timeout=30000")

    def append(self, bodies: Sequence[str]) -> list[int]:
        now = utcnow().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._forget - self._forgotten >= FORGET_BATCH:
                db.execute("DELETE FROM intake_journal WHERE id <= ?", (self._forget,))
                self._forgotten = self._forget
            db.executemany(
                "INSERT INTO intake_journal (received_at, body, attempts) VALUES (?, ?, 0)",
                [(now, body) for body in bodies],
            )
            # One connection holding the write lock: AUTOINCREMENT gave consecutive ids.
            last = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return list(range(last - len(bodies) + 1, last + 1))

    def applied_through(self, entry_id: int) -> None:
        self._forget = max(self._forget, entry_id)

    def close(self) -> None:
        self._db.close()
