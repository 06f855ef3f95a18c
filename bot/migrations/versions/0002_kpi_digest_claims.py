"""kpi digest claims

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 11:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kpi_digest_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("point_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("scheduled_for", bot.db.UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("claimed_at", bot.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("point_key"),
    )


def downgrade() -> None:
    op.drop_table("kpi_digest_claims")
