"""event endpoints, the event outbox and the batches posted to endpoints

Revision ID: 0061
Revises: 0041
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0061"
down_revision = "0041"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Text = sqlmodel.sql.sqltypes.AutoString
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_endpoints",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", Text(length=2000), nullable=False),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("description", Text(length=200), nullable=True),
        sa.Column("secret", Text(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", Text(), nullable=True),
        sa.Column("last_success_at", Stamp, nullable=True),
        sa.Column("paused_at", Stamp, nullable=True),
        sa.Column("pause_reason", Text(), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_table(
        "event_outbox",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("type", Text(length=40), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient_id", Text(length=200), nullable=True),
        sa.Column("reason", Text(length=30), nullable=True),
        sa.Column("detail", Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("at", Stamp, nullable=False),
        # Ids are event ids: never given twice, though rows are deleted once fanned out.
        sqlite_autoincrement=True,
    )
    op.create_table(
        "event_batches",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("status", Text(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Stamp, nullable=True),
        sa.Column("lease_until", Stamp, nullable=True),
        sa.Column("last_error", Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("sent_at", Stamp, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_event_batches_endpoint_id", "event_batches", ["endpoint_id"])
    op.create_index("ix_event_batches_due", "event_batches", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("event_batches")
    op.drop_table("event_outbox")
    op.drop_table("event_endpoints")
