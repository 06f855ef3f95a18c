"""`incident-bot journal`: the intake journal for operators.

    incident-bot journal               pending count, oldest pending, failures listed
    incident-bot journal show ID       a failure's notification, as received, and why
    incident-bot journal retry ID      journal it again (after fixing the cause) and forget the failure
    incident-bot journal drop ID       forget it (the notification is not applied)

A failure is a notification that was acknowledged (Alertmanager will not resend it) but that
the database refused to store; `retry` hands it back to the running bot, which applies it as
if it had just arrived. Exit status: 0 done, 1 database unreachable or no such failure.
"""

from __future__ import annotations

import sys

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col, select

from bot.db import create_db_engine, transaction
from bot.db_cli import report_unreachable
from bot.intake_journal import (
    FileSink,
    IntakeFailure,
    JournalEntry,
    TableSink,
    journal_file_path,
    open_journal_reader,
)
from bot.intake_status import journal_status
from bot.outbox_leases import process_identity

__all__ = ["journal_command"]

PREVIEW = 100


def journal_command(action: str, failure_id: int | None, database_url: str) -> int:
    engine = create_db_engine(database_url)
    path = journal_file_path(database_url)
    reader = open_journal_reader(path) if path is not None else None
    try:
        if action == "status":
            return _status(engine, reader)
        assert failure_id is not None
        with transaction(engine) as session:
            failure = session.get(IntakeFailure, failure_id)
            if failure is None:
                print(
                    f"incident-bot: no journal failure {failure_id} (see `incident-bot journal`)",
                    file=sys.stderr,
                )
                return 1
            if action == "show":
                received = f"{failure.received_at:%Y-%m-%d %H:%M:%S} UTC"
                print(f"failure {failure.id}: journal entry {failure.entry_id}, received {received}")
                print(f"error: {failure.error}")
                print(failure.body)
                return 0
            if action == "retry":
                sink = FileSink(path) if path is not None else TableSink(engine, f"cli:{process_identity()}")
                try:
                    [entry] = sink.append([failure.body])
                finally:
                    sink.close()
                print(f"failure {failure.id} journaled again as entry {entry}; the running bot applies it")
            else:
                print(f"failure {failure.id} dropped; its notification will not be applied")
            session.delete(failure)
        return 0
    except (OperationalError, DBAPIError) as exc:
        return report_unreachable(exc)
    finally:
        engine.dispose()
        if reader is not None:
            reader.dispose()


def _status(engine: Engine, reader: Engine | None) -> int:
    status = journal_status(engine, reader)
    oldest = (
        f", oldest received {status.oldest_pending:%Y-%m-%d %H:%M:%S} UTC" if status.oldest_pending else ""
    )
    print(f"{status.pending} notification(s) acknowledged and not yet applied{oldest}")
    print(f"{status.failures} notification(s) the database refused (never applied)")
    with Session(engine) as session:
        for failure in session.exec(select(IntakeFailure).order_by(col(IntakeFailure.id))):
            print(f"  {failure.id:>6}  {failure.received_at:%Y-%m-%d %H:%M:%S}  {_clip(failure.error)}")
        for entry in session.exec(select(JournalEntry).where(col(JournalEntry.error).is_not(None))):
            # An older version kept failures in the journal table; they are listed, not managed.
            print(f"  (journal entry {entry.id}, from an older version)  {_clip(entry.error or '')}")
    return 0


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"
