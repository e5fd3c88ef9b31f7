"""sfduck's metadata tables in SQLAlchemy Core: the same names and columns as the seed's
`sfduck_meta` schema, written once for SQLite and PostgreSQL alike.

Lists (primary_key, include/exclude columns) and documents (stats, watermark) are JSON; every
timestamp is timezone-aware UTC on the way in and on the way out, whatever the backend stores.
The Alembic migrations (`migrations/versions`) create exactly these; a test compares the two.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from sfduck_core.job_status import ACTIVE_JOB_STATUSES

__all__ = ["ACTIVE_JOB_STATUSES"]


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """An aware datetime in UTC both ways. SQLite keeps text without a zone (stored as UTC here,
    so its date functions bucket by UTC day); PostgreSQL keeps timestamptz and answers in the
    session's zone, which is converted back to UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | str | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # ISO text, as a commit record (JSON) carries a timestamp
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData()

allowed_tables = sa.Table(
    "allowed_tables", metadata,
    sa.Column("table_id", sa.String(64), primary_key=True),
    sa.Column("schema_name", sa.String(255), nullable=False),
    sa.Column("table_name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("incremental_key", sa.String(255)),
    sa.Column("primary_key", sa.JSON),
    sa.Column("detect_deletes", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("include_columns", sa.JSON),
    sa.Column("exclude_columns", sa.JSON),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("schema_name", "table_name", name="allowed_tables_by_name"),
)

sync_jobs = sa.Table(
    "sync_jobs", metadata,
    sa.Column("sync_id", sa.String(64), primary_key=True),
    sa.Column("table_id", sa.String(64), nullable=False),
    sa.Column("schema_name", sa.String(255), nullable=False),
    sa.Column("table_name", sa.String(255), nullable=False),
    sa.Column("strategy", sa.String(32), nullable=False),
    sa.Column("transport", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime),
    sa.Column("completed_at", UtcDateTime),
    sa.Column("error_message", sa.Text),
    sa.Column("stats", sa.JSON),
    sa.Column("filter", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("process_started", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("trigger", sa.String(32)),
    sa.Column("started_by", sa.String(255)),
    # a page of jobs is newest first, optionally for one table or of one status
    sa.Index("sync_jobs_by_created", "created_at"),
    sa.Index("sync_jobs_by_table_status", "table_id", "status"),
    sa.Index("sync_jobs_by_table_created", "table_id", "created_at"),
    sa.Index("sync_jobs_by_table_completed", "table_id", "completed_at"),  # the board's last end
    sa.Index("sync_jobs_by_status_created", "status", "created_at"),  # "the failed ones", newest first
    # at most one pending, waiting or running job per table, enforced by the database itself: two
    # processes (or two machines on one PostgreSQL) starting a sync of one table at once cannot
    # both insert one, whatever each of them read before
    sa.Index("sync_jobs_one_active_per_table", "table_id", unique=True,
             sqlite_where=sa.text("status IN ('pending', 'waiting', 'running')"),
             postgresql_where=sa.text("status IN ('pending', 'waiting', 'running')")),
)

table_sync_status = sa.Table(
    "table_sync_status", metadata,
    sa.Column("table_id", sa.String(64), primary_key=True),
    sa.Column("schema_name", sa.String(255), nullable=False),
    sa.Column("table_name", sa.String(255), nullable=False),
    sa.Column("last_sync_id", sa.String(64)),
    sa.Column("last_status", sa.String(16)),
    sa.Column("last_sync_at", UtcDateTime),
    sa.Column("last_success_sync_id", sa.String(64)),
    sa.Column("last_success_at", UtcDateTime),
    sa.Column("row_count", sa.BigInteger),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("watermark", sa.JSON),
    sa.Column("source_row_count", sa.BigInteger),
    sa.Column("source_last_modified", UtcDateTime),
    sa.Column("columns", sa.JSON),
    sa.Column("filter", sa.Text),
    sa.Index("table_sync_status_by_name", "schema_name", "table_name"),
)

# which Snowflake the data's tables come from ("demo" or the account), claimed on first use
data_source = sa.Table(
    "data_source", metadata,
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("claimed_at", UtcDateTime, nullable=False),
)

# registrations, unregistrations and schedule changes: who and when
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(255)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("table_id", sa.String(64)),
    sa.Column("schema_name", sa.String(255)),
    sa.Column("table_name", sa.String(255)),
    sa.Column("details", sa.JSON),
    sa.Index("audit_log_by_time", "changed_at"),
)

# one schedule per registered table (see sfduck_core.schedules)
schedules = sa.Table(
    "schedules", metadata,
    sa.Column("table_id", sa.String(64), primary_key=True),
    sa.Column("cron", sa.String(255)),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("interval_s", sa.BigInteger),
    sa.Column("strategy", sa.String(32), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("paused_reason", sa.Text),
    sa.Column("next_run_at", UtcDateTime),
    sa.Column("last_run_at", UtcDateTime),
    sa.Column("last_sync_id", sa.String(64)),
    sa.Column("last_outcome", sa.Text),
    sa.Column("updated_by", sa.String(255)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# data targets whose old metadata (sfduck_meta, releases up to 7b69258) was looked for and copied
# here: `copied` the row counts per table (None: there was nothing to copy), `marked_at` when the
# target itself was marked migrated (None: the copy committed, the mark is still to make)
legacy_upgrades = sa.Table(
    "legacy_upgrades", metadata,
    sa.Column("target", sa.String(1024), primary_key=True),
    sa.Column("checked_at", UtcDateTime, nullable=False),
    sa.Column("copied", sa.JSON),
    sa.Column("marked_at", UtcDateTime),
)
