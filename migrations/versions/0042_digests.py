"""digests: one message listing a recipient's held low-priority notifications

Revision ID: 0042
Revises: 0061
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0042"
down_revision = "0061"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("recipient_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("carrier_id", sa.BigInteger(), nullable=True),
        sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("html", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("action_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("recipient_id", "channel", "period", name="uq_digest_period"),
    )
    op.create_index("ix_digests_recipient_id", "digests", ["recipient_id"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("digest_id", sa.BigInteger(), nullable=True))
        batch.create_index("ix_deliveries_digest_id", ["digest_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_digest_id")
        batch.drop_column("digest_id")
    op.drop_index("ix_digests_recipient_id", table_name="digests")
    op.drop_table("digests")
