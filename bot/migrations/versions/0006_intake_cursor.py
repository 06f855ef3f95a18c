"""intake cursor and failures: how far the SQLite intake journal file has been applied, and
the notifications that can never be applied

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 14:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("failed_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "intake_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("applied_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("intake_cursor")
    op.drop_table("intake_failures")
