"""campaigns.planning_step: steps of a campaign take turns planning; the per-recipient
claims (campaign_recipients) go

Revision ID: r15d
Revises: u16a
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "r15d"
down_revision = "u16a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planning_step", sa.BigInteger(), nullable=True))
    op.drop_table("campaign_recipients")


def downgrade() -> None:
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "recipient_id"),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("planning_step")
