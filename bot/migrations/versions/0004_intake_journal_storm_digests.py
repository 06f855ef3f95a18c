"""intake journal and storm digests

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 11:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_journal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "storm_digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("anchor_incident_id", sa.Integer(), nullable=False),
        sa.Column("started_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("ts", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("closed_at", bot.db.UTCDateTime(), nullable=True),
        sa.Column("refresh_queued", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["anchor_incident_id"], ["incidents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_storm_digest_channel_open", "storm_digests", ["channel", "closed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_storm_digest_channel_open", table_name="storm_digests")
    op.drop_table("storm_digests")
    op.drop_table("intake_journal")
