"""recipients' name and attributes; category caps by activity

Revision ID: 0041
Revises: 0060
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0041"
down_revision = "0060"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(
            sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=True))
    with op.batch_alter_table("categories") as batch:
        batch.add_column(sa.Column("caps_by_activity", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("categories") as batch:
        batch.drop_column("caps_by_activity")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("attributes")
        batch.drop_column("name")
