"""campaign_recipients: the latest step of a campaign planned for each recipient

Revision ID: r15a
Revises: 0071
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "r15a"
down_revision = "0071"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "recipient_id"),
    )


def downgrade() -> None:
    op.drop_table("campaign_recipients")
