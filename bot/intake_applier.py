"""The journal applier: turns journaled notifications into incidents, oldest first, and
marks each entry applied in the transaction that applies it (so a notification is applied
exactly once, whatever dies when).

It runs in one place per replica, either a thread of the serving process or a process of its
own (bot/intake_process.py); everything it reports back is a plain, picklable `Applied`, so
both look the same to the intake writer. It works in short transactions and pauses between
them while requests are arriving. Two journals (bot/intake_journal.py): a table of the
database on PostgreSQL (entries deleted as they are applied, adopted across replicas), a
file of its own on SQLite (applied in id order up to a cursor kept in the database).

Entries whose writer died (kill -9 between the 200 and the apply) are applied by the next
process: at once when that process is on the same host, otherwise after `ADOPT_AFTER`.
A notification the database can never store (a value PostgreSQL refuses) is moved to
`intake_failures` with its reason, logged, and listed by `incident-bot journal`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session, col, select

from bot.alerts import AlertmanagerWebhook, describe_validation_error, parse_webhook
from bot.db import is_sqlite, transaction, utcnow
from bot.incidents.intake import IntakeResult
from bot.intake_journal import FILE_JOURNAL, IntakeCursor, IntakeFailure, JournalEntry
from bot.outbox_leases import owner_dead

__all__ = ["ADOPT_AFTER", "Applied", "Apply", "JournalApplier", "Resolved"]

logger = logging.getLogger(__name__)

ADOPT_AFTER = timedelta(seconds=30)
ADOPT_EVERY_SECONDS = 5.0
APPLY_BATCH = 64
APPLY_SLICE_SECONDS = 0.02
# The writer committed this recently: requests are arriving, so pause between slices.
BUSY_WINDOW_SECONDS = 0.1
RACE_ATTEMPTS = 5

Apply = Callable[[Session, AlertmanagerWebhook], IntakeResult]


@dataclass(frozen=True)
class Resolved:
    severity: str
    service: str
    seconds: float


@dataclass(frozen=True)
class Applied:
    """What became of one journal entry, for the request still waiting on it and for /metrics."""

    entry_id: int
    #: Which journal the entry was in ("table" or "file": their ids are separate sequences).
    journal: str = "table"
    incident_id: int | None = None
    duplicate: bool = False
    opened: tuple[str, ...] = ()  # the severities of the incidents it opened
    resolved: tuple[Resolved, ...] = ()
    jobs: int = 0
    # Set when the database can never store it: kept in the journal with this reason.
    error: str | None = None

    @property
    def incident_key(self) -> str | None:
        return f"INC-{self.incident_id}" if self.incident_id is not None else None

    @classmethod
    def of(cls, entry_id: int, journal: str, result: IntakeResult) -> Applied:
        resolved = tuple(
            Resolved(
                i.severity,
                i.service or "unknown",
                max(0.0, (i.resolved_at - i.created_at).total_seconds()),
            )
            for i in result.resolved
            if i.resolved_at is not None
        )
        return cls(
            entry_id,
            journal,
            incident_id=result.incident_id,
            duplicate=result.duplicate,
            opened=tuple(i.severity for i in result.opened),
            resolved=resolved,
            jobs=result.jobs,
        )


@dataclass
class JournalApplier:
    engine: Engine
    apply: Apply
    owner: str
    #: SQLite: the journal file (entries at or below the cursor are applied). None: the journal
    #: is the database's own table.
    journal_file: Engine | None = None

    def run(
        self,
        *,
        stopping: Callable[[], bool],
        wait: Callable[[float], None],
        report: Callable[[list[Applied]], None],
        writer_busy: Callable[[], bool],
    ) -> None:
        """Apply until `stopping()`; `wait(timeout)` returns early when the writer has
        committed new entries. A database outage pauses with growing waits, never exits."""
        pause = 0.0
        adopted_at = 0.0
        while not stopping():
            wait(1.0 if pause == 0 else pause)
            while not stopping():
                try:
                    if time.monotonic() - adopted_at > ADOPT_EVERY_SECONDS:
                        self.adopt_orphans()
                        adopted_at = time.monotonic()
                    applied = self.apply_batch()
                except (OperationalError, InterfaceError) as exc:
                    logger.error(
                        "journal apply failed; database unavailable?", extra={"error": str(exc.orig)}
                    )
                    pause = min(5.0, max(0.5, pause * 2))
                    break
                except Exception:
                    logger.exception("journal apply failed")
                    pause = min(5.0, max(0.5, pause * 2))
                    break
                pause = 0.0
                if not applied:
                    break
                report(applied)
                if writer_busy():
                    # Requests are arriving: give the writer the database (and, in a thread,
                    # the interpreter) for as long as this slice had them.
                    time.sleep(APPLY_SLICE_SECONDS)

    def adopt_orphans(self) -> int:
        """Take over the unapplied entries of dead processes on this host (a restart after kill -9)."""
        table = JournalEntry.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as connection:
            owners = connection.execute(
                sa.select(table.c.owner)
                .where(table.c.owner != self.owner, table.c.error.is_(None))
                .distinct()
            ).scalars()
            dead = [owner for owner in owners if owner_dead(owner, self.owner)]
            if dead:
                connection.execute(sa.update(table).where(table.c.owner.in_(dead)).values(owner=self.owner))
        if dead:
            logger.warning("applying notifications journaled by a dead process", extra={"owners": dead})
        return len(dead)

    def apply_batch(self) -> list[Applied]:
        """Apply the oldest due journal entries in one short transaction."""
        # On SQLite the table is drained too: entries journaled there by an older version.
        applied = self._apply_table_batch()
        if not applied and self.journal_file is not None:
            applied = self._apply_file_batch()
        return applied

    def _apply_table_batch(self) -> list[Applied]:
        outcomes: list[Applied] = []
        with transaction(self.engine) as session:
            stale = utcnow() - ADOPT_AFTER
            query = (
                select(JournalEntry)
                .where(
                    col(JournalEntry.error).is_(None),
                    sa.or_(col(JournalEntry.owner) == self.owner, col(JournalEntry.received_at) < stale),
                )
                .order_by(col(JournalEntry.id))
                .limit(APPLY_BATCH)
            )
            if not is_sqlite(self.engine):
                query = query.with_for_update(skip_locked=True)
            rows = session.exec(query).all()
            deadline = time.perf_counter() + APPLY_SLICE_SECONDS
            for row in rows:
                if outcomes and time.perf_counter() > deadline:
                    break
                assert row.id is not None
                outcome = self._apply_one(session, row.id, "table", row.body)
                if outcome.error is not None:
                    session.add(_failure(outcome, row.received_at, row.body))
                session.delete(row)
                outcomes.append(outcome)
        return outcomes

    def _apply_file_batch(self) -> list[Applied]:
        assert self.journal_file is not None
        outcomes: list[Applied] = []
        with transaction(self.engine) as session:
            cursor = session.get(IntakeCursor, 1) or IntakeCursor(id=1, applied_through=0)
            with self.journal_file.connect() as journal:  # a WAL reader: never blocks the writer
                rows = journal.execute(
                    sa.select(FILE_JOURNAL.c.id, FILE_JOURNAL.c.received_at, FILE_JOURNAL.c.body)
                    .where(FILE_JOURNAL.c.id > cursor.applied_through)
                    .order_by(FILE_JOURNAL.c.id)
                    .limit(APPLY_BATCH)
                ).all()
                journal.rollback()
            if not rows:
                return []
            deadline = time.perf_counter() + APPLY_SLICE_SECONDS
            for row in rows:
                if outcomes and time.perf_counter() > deadline:
                    break
                outcome = self._apply_one(session, int(row.id), "file", str(row.body))
                if outcome.error is not None:
                    session.add(_failure(outcome, row.received_at, str(row.body)))
                outcomes.append(outcome)
            cursor.applied_through = outcomes[-1].entry_id
            session.add(cursor)
        return outcomes

    def _apply_one(self, session: Session, entry_id: int, journal: str, body: str) -> Applied:
        try:
            webhook = parse_webhook(body.encode())
        except Exception as exc:  # validated before it was journaled: only a changed model gets here
            return _poisoned(entry_id, journal, exc)
        for attempt in range(RACE_ATTEMPTS):
            try:
                with session.begin_nested():
                    result = self.apply(session, webhook)
            except IntegrityError as exc:
                # A concurrent replica applied the same group (HA peers): retry sees its rows.
                if attempt == RACE_ATTEMPTS - 1:
                    return _poisoned(entry_id, journal, exc)
                continue
            except (OperationalError, InterfaceError):
                raise
            except (DataError, ValueError) as exc:
                return _poisoned(entry_id, journal, exc)
            return Applied.of(entry_id, journal, result)
        raise AssertionError("unreachable")


def _poisoned(entry_id: int, journal: str, exc: BaseException) -> Applied:
    if isinstance(exc, ValidationError):  # journaled by a version with a different model
        problems = describe_validation_error(exc)
        reason = "; ".join(f"{p['field']}: {p['message']}" for p in problems)[:500]
    else:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:500]
    logger.error(
        "notification cannot be stored; kept in the journal (see `incident-bot journal`)",
        extra={"entry": entry_id, "error": reason},
    )
    return Applied(entry_id, journal, error=reason)


def _failure(outcome: Applied, received_at: datetime, body: str) -> IntakeFailure:
    assert outcome.error is not None
    return IntakeFailure(entry_id=outcome.entry_id, received_at=received_at, body=body, error=outcome.error)
