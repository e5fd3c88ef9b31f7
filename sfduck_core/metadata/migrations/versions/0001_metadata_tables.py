"""The metadata tables of the seed's sfduck_meta schema, in their own database.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('pending', 'running')")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "allowed_tables",
        sa.Column("table_id", sa.String(64), primary_key=True),
        sa.Column("schema_name", sa.String(255), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("incremental_key", sa.String(255)),
        sa.Column("primary_key", sa.JSON),
        sa.Column("detect_deletes", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("include_columns", sa.JSON),
        sa.Column("exclude_columns", sa.JSON),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("schema_name", "table_name", name="allowed_tables_by_name"),
    )
    op.create_table(
        "sync_jobs",
        sa.Column("sync_id", sa.String(64), primary_key=True),
        sa.Column("table_id", sa.String(64), nullable=False),
        sa.Column("schema_name", sa.String(255), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("transport", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("started_at", _ts()),
        sa.Column("completed_at", _ts()),
        sa.Column("error_message", sa.Text),
        sa.Column("stats", sa.JSON),
        sa.Column("filter", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("process_started", sa.Float),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("trigger", sa.String(32)),
        sa.Column("started_by", sa.String(255)),
    )
    op.create_index("sync_jobs_by_created", "sync_jobs", ["created_at"])
    op.create_index("sync_jobs_by_table_status", "sync_jobs", ["table_id", "status"])
    op.create_index("sync_jobs_by_table_created", "sync_jobs", ["table_id", "created_at"])
    op.create_index("sync_jobs_by_table_completed", "sync_jobs", ["table_id", "completed_at"])
    op.create_index("sync_jobs_by_status_created", "sync_jobs", ["status", "created_at"])
    op.create_index("sync_jobs_one_active_per_table", "sync_jobs", ["table_id"], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_table(
        "table_sync_status",
        sa.Column("table_id", sa.String(64), primary_key=True),
        sa.Column("schema_name", sa.String(255), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("last_sync_id", sa.String(64)),
        sa.Column("last_status", sa.String(16)),
        sa.Column("last_sync_at", _ts()),
        sa.Column("last_success_sync_id", sa.String(64)),
        sa.Column("last_success_at", _ts()),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("watermark", sa.JSON),
        sa.Column("source_row_count", sa.BigInteger),
        sa.Column("source_last_modified", _ts()),
        sa.Column("columns", sa.JSON),
        sa.Column("filter", sa.Text),
    )
    op.create_index("table_sync_status_by_name", "table_sync_status", ["schema_name", "table_name"])
    op.create_table(
        "data_source",
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("claimed_at", _ts(), nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("changed_at", _ts(), nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("table_id", sa.String(64)),
        sa.Column("schema_name", sa.String(255)),
        sa.Column("table_name", sa.String(255)),
        sa.Column("details", sa.JSON),
    )
    op.create_index("audit_log_by_time", "audit_log", ["changed_at"])
    op.create_table(
        "schedules",
        sa.Column("table_id", sa.String(64), primary_key=True),
        sa.Column("cron", sa.String(255)),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("interval_s", sa.BigInteger),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("paused_reason", sa.Text),
        sa.Column("next_run_at", _ts()),
        sa.Column("last_run_at", _ts()),
        sa.Column("last_sync_id", sa.String(64)),
        sa.Column("last_outcome", sa.Text),
        sa.Column("updated_by", sa.String(255)),
        sa.Column("updated_at", _ts(), nullable=False),
    )


def downgrade() -> None:
    for table in ("schedules", "audit_log", "data_source", "table_sync_status", "sync_jobs", "allowed_tables"):
        op.drop_table(table)
