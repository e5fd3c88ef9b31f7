"""Which data targets' old metadata (their sfduck_meta) was copied here, so each start checks
one row instead of opening the data target (see sfduck_core.upgrade).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legacy_upgrades",
        sa.Column("target", sa.String(1024), primary_key=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("copied", sa.JSON),
        sa.Column("marked_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("legacy_upgrades")
