"""The KPI package's one table: schedule points of the digest that were claimed."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Column, Field, SQLModel

from bot.db import UTCDateTime, utcnow

__all__ = ["DigestClaim"]


class DigestClaim(SQLModel, table=True):
    """One row per schedule point whose digest was claimed (and its job enqueued); the
    unique `point_key` is what makes the digest go out once across replicas and restarts."""

    __tablename__ = "kpi_digest_claims"

    id: int | None = Field(default=None, primary_key=True)
    point_key: str = Field(unique=True)
    scheduled_for: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    claimed_by: str
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
