"""`incident-bot db upgrade` and `incident-bot db current`: migrations for operators who run
them as a Job before a rollout, on the database named by INCIDENT_BOT_DATABASE_URL.

Exit status: 0 done, 1 the database could not be reached (one line saying why), 2 a
configuration problem (a schema newer than this version, an invalid setting).
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import DBAPIError, OperationalError

from bot.db import create_db_engine
from bot.schema import current_revision, head_revision, upgrade

__all__ = ["db_command", "report_unreachable"]


def db_command(action: str, database_url: str) -> int:
    engine = create_db_engine(database_url)
    try:
        if action == "upgrade":
            before, after = upgrade(engine)
            if before == after:
                print(f"database already at revision {after} (newest)")
            else:
                print(f"database upgraded from {before or 'empty'} to {after}")
            return 0
        revision = current_revision(engine)
        head = head_revision()
        state = "newest" if revision == head else f"newest is {head}: run `incident-bot db upgrade`"
        print(f"{revision or 'none (empty database)'} ({state})")
        return 0
    except (OperationalError, DBAPIError) as exc:
        return report_unreachable(exc)
    finally:
        engine.dispose()


def report_unreachable(exc: DBAPIError) -> int:
    """One line saying why (the driver's first line, never the URL with its password); exit 1."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    print(f"incident-bot: database unreachable: {reason}", file=sys.stderr)
    return 1
