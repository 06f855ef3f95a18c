"""How the intake journal stands: notifications acknowledged but not yet applied, and those
that can never be applied. Read by /metrics (so an alert can fire on a stuck applier) and by
`incident-bot journal`; both journals (bot/intake_journal.py) look the same from here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from bot.intake_journal import FILE_JOURNAL, IntakeCursor, IntakeFailure, JournalEntry

__all__ = ["JournalStatus", "journal_status"]


@dataclass(frozen=True)
class JournalStatus:
    pending: int
    oldest_pending: datetime | None
    failures: int


def journal_status(engine: Engine, journal_file: Engine | None) -> JournalStatus:
    """`journal_file`: SQLite's journal file (read only), None on PostgreSQL."""
    with Session(engine) as session:
        table_pending, table_oldest = session.exec(
            select(func.count(), func.min(JournalEntry.received_at)).where(col(JournalEntry.error).is_(None))
        ).one()
        failures = session.exec(select(func.count()).select_from(IntakeFailure)).one()
        # Left by an older version, which kept failures in the journal table.
        failures += session.exec(
            select(func.count()).select_from(JournalEntry).where(col(JournalEntry.error).is_not(None))
        ).one()
        cursor = session.get(IntakeCursor, 1)
    pending, oldest = int(table_pending), table_oldest
    if journal_file is not None:
        through = cursor.applied_through if cursor is not None else 0
        with journal_file.connect() as journal:
            file_pending, file_oldest = journal.execute(
                sa.select(sa.func.count(), sa.func.min(FILE_JOURNAL.c.received_at)).where(
                    FILE_JOURNAL.c.id > through
                )
            ).one()
        pending += int(file_pending)
        if file_oldest is not None and (oldest is None or file_oldest < oldest):
            oldest = file_oldest
    return JournalStatus(pending, oldest, int(failures))
