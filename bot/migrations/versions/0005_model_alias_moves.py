"""model alias moves: what the bot saw MLflow aliases point to, for "the version before"

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_alias_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("alias", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("previous_version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("observed_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("moved_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_model_alias_moves_model"), "model_alias_moves", ["model"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_model_alias_moves_model"), table_name="model_alias_moves")
    op.drop_table("model_alias_moves")
