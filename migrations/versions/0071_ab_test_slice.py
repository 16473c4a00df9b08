"""notifications: an A/B test slice first, then the winner to the rest

Revision ID: 0071
Revises: 0070
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0071"
down_revision = "0070"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("ab_test", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("ab_decide_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ab_decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_notifications_ab_decide_at", ["ab_decide_at"])


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_ab_decide_at")
        batch.drop_column("ab_decided_at")
        batch.drop_column("ab_decide_at")
        batch.drop_column("ab_test")
