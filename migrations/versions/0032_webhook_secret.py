"""installation webhook signing secret

Revision ID: 0032
Revises: 0031
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled by `tidings migrate` (engine.store.installation.ensure) right after the upgrade.
    with op.batch_alter_table("installation") as batch:
        batch.add_column(
            sa.Column("webhook_secret", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("installation") as batch:
        batch.drop_column("webhook_secret")
