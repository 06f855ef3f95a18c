"""The alias moves the bot has seen, so "the version before" is the one the serving alias
pointed to before rather than merely the next lower version number (after a rollback from v5
to v3 and a new v6, the version before v6 is v3, not v5).

MLflow keeps no history of alias moves, so this is what the bot observed: each time it reads
an alias (for an incident's thread, before and after a rollback) it records a move when the
alias points somewhere new. The first sighting has no version before; then the next lower
registered version is the best guess, and messages say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Column, Field, Session, SQLModel, col, select

from bot.db import UTCDateTime, utcnow

__all__ = ["AliasMove", "Before", "observe_alias", "version_before"]


class AliasMove(SQLModel, table=True):
    __tablename__ = "model_alias_moves"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    alias: str
    version: str
    previous_version: str | None = None
    observed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    # Who moved it, when the bot did ("U0123ABCD" for a rollback); None when it was only seen.
    moved_by: str | None = None


def _latest(session: Session, model: str, alias: str) -> AliasMove | None:
    return session.exec(
        select(AliasMove)
        .where(AliasMove.model == model, AliasMove.alias == alias)
        .order_by(col(AliasMove.observed_at).desc(), col(AliasMove.id).desc())
        .limit(1)
    ).first()


def observe_alias(
    session: Session,
    model: str,
    alias: str,
    version: str,
    *,
    now: datetime | None = None,
    moved_by: str | None = None,
) -> AliasMove:
    """Record that `model@alias` points at `version`; a new row only when it moved."""
    latest = _latest(session, model, alias)
    if latest is not None and latest.version == version:
        return latest
    move = AliasMove(
        model=model,
        alias=alias,
        version=version,
        previous_version=latest.version if latest is not None else None,
        observed_at=now or utcnow(),
        moved_by=moved_by,
    )
    session.add(move)
    session.flush()
    return move


@dataclass(frozen=True)
class Before:
    version: str
    observed: bool  # True: the alias was seen there; False: the next lower version, a guess
    moved_at: datetime | None = None  # when the bot saw the alias move to the current version


def version_before(
    session: Session, model: str, alias: str, current: str, registered: Sequence[str]
) -> Before | None:
    """The version `alias` pointed to before `current`: from the moves the bot saw, else the
    highest registered version below `current`."""
    latest = _latest(session, model, alias)
    if latest is not None and latest.version == current and latest.previous_version:
        return Before(latest.previous_version, True, latest.observed_at)
    numbers = sorted((int(v) for v in registered if v.isdigit()), reverse=True)
    if current.isdigit():
        lower = [n for n in numbers if n < int(current)]
        if lower:
            return Before(str(lower[0]), False)
    return None
