"""The intake journal: every accepted Alertmanager notification, durably written before its
200 and removed in the same transaction that applies it to incidents.

Why a journal: applying a notification (grouping, alerts, timeline, outbox jobs) is the
slow part of intake, and under a storm it would make Alertmanager wait and time out. The
journal row is one small insert, committed for many concurrent requests at once
(bot/intake_writer.py), so a 200 still means "survives a kill -9" while the apply catches up.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from bot.db import UTCDateTime, utcnow

__all__ = ["JournalEntry"]


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
