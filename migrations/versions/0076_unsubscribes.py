"""unsubscribes: each unsubscribe, and the delivery whose link was used

Revision ID: u16a
Revises: r15c
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "u16a"
down_revision = "r15c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unsubscribes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("recipient_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("unsubscribes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unsubscribes_recipient_id"), ["recipient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_unsubscribes_delivery_id"), ["delivery_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("unsubscribes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unsubscribes_delivery_id"))
        batch_op.drop_index(batch_op.f("ix_unsubscribes_recipient_id"))
    op.drop_table("unsubscribes")
