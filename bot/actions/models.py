"""Remediation actions as records: offered by a runbook button or asked for by a command,
then checked, confirmed, approved, run and verified, every step on the record.

A button's `value` carries only an action record's id (STYLE.md 7): the target and the
parameters stay here, on our side, and are re-checked when the button is clicked (policy,
state, expiry), so a forged payload cannot widen what a button does.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from bot.db import UTCDateTime, utcnow

__all__ = ["ActionRecord", "ActionStatus", "TargetLock"]


class ActionStatus(StrEnum):
    OFFERED = "offered"  # a runbook button, nobody has clicked it yet
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DRY_RUN = "dry_run"


class ActionRecord(SQLModel, table=True):
    __tablename__ = "actions"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int | None = Field(default=None, foreign_key="incidents.id", index=True)
    kind: str  # bot.actions.policy.ActionKind
    # Where it came from: "runbook:<name>@<version>", "command:/rollback", ...
    source: str
    label: str = ""
    # Validated parameters: namespace, deployment, revision, replicas, duration, comment,
    # and for silences the alert label sets to match.
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    target: str | None = Field(default=None, index=True)  # "namespace/deployment", for locks and cooldowns
    status: str = Field(default=ActionStatus.OFFERED, index=True)
    requested_by: str | None = None
    requested_by_name: str | None = None
    approved_by: str | None = None
    # What will change / what changed: rendered plan, before and after state, API request.
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    error: str | None = None
    dry_run: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class TargetLock(SQLModel, table=True):
    """One action at a time per target: the row exists while an action on it is under way.
    The primary key makes a second claim fail, on SQLite and PostgreSQL alike."""

    __tablename__ = "target_locks"

    target: str = Field(primary_key=True)
    action_id: int = Field(foreign_key="actions.id")
    locked_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
