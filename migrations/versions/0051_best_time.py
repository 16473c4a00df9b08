"""notifications: send at each recipient's best hour, by a latest time

Revision ID: 0051
Revises: 0042
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0051"
down_revision = "0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(
            sa.Column("best_time", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("latest_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("latest_at")
        batch.drop_column("best_time")
