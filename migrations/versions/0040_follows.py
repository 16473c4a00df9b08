"""follows: recipients following topics

Revision ID: 0040
Revises: 0032
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0040"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "follows",
        sa.Column("recipient_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recipient_id", "topic"),
    )
    op.create_index("ix_follows_topic", "follows", ["topic", "recipient_id"])


def downgrade() -> None:
    op.drop_index("ix_follows_topic", table_name="follows")
    op.drop_table("follows")
