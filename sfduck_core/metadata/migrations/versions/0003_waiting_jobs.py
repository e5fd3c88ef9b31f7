"""A job `waiting` for the DuckDB file another process holds is active too: at most one pending,
waiting or running job per table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INDEX = "sync_jobs_one_active_per_table"


def _recreate(statuses: str) -> None:
    where = sa.text(f"status IN ({statuses})")
    op.drop_index(_INDEX, table_name="sync_jobs")
    op.create_index(_INDEX, "sync_jobs", ["table_id"], unique=True, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    _recreate("'pending', 'waiting', 'running'")


def downgrade() -> None:
    _recreate("'pending', 'running'")
