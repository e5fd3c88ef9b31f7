"""The aggregate reads of the History page and the status board, computed in the database so a
year of schedules (500,000 jobs) costs a page little."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from sfduck_core.metadata.records import JobQuery
from sfduck_core.metadata.tables import UtcDateTime, allowed_tables, sync_jobs, table_sync_status

if TYPE_CHECKING:
    from sfduck_core.metadata.engine import MetadataEngine

BUCKETS = ("day", "week", "month")


def _bucket(dialect: str, bucket: str) -> Any:
    """The UTC date that starts `created_at`'s day, ISO week (Monday) or month."""
    created = sync_jobs.c.created_at
    if dialect == "postgresql":
        return sa.cast(sa.func.date_trunc(bucket, sa.func.timezone("UTC", created)), sa.Date)
    if bucket == "week":  # SQLite keeps UTC text: back to the Monday of its week
        return sa.func.date(created, "-6 days", "weekday 1")
    if bucket == "month":
        return sa.func.date(created, "start of month")
    return sa.func.date(created)


def _stat(name: str, as_int: bool) -> Any:
    value = sync_jobs.c.stats[name]
    return value.as_integer() if as_int else value.as_float()


class Reports:
    def __init__(self, db: MetadataEngine) -> None:
        self.db = db

    def history_facets(self) -> dict[str, Any]:
        """Registered tables' labels, the users who started jobs, and the first job's time."""
        label = allowed_tables.c.schema_name + "." + allowed_tables.c.table_name
        with self.db.read() as conn:
            tables = list(conn.execute(sa.select(label).order_by(label)).scalars())
            users = list(conn.execute(sa.select(sync_jobs.c.started_by).where(sync_jobs.c.started_by.is_not(None))
                                      .distinct().order_by(sync_jobs.c.started_by)).scalars())
            first = conn.execute(sa.select(sa.func.min(sync_jobs.c.created_at))).scalar()
        return {"tables": tables, "users": users, "first_created": first}

    def daily_summary(self, query: JobQuery, bucket: str = "day") -> list[tuple[Any, ...]]:
        """(bucket date, status, jobs, rows, bytes, average and longest duration) per bucket and status."""
        if bucket not in BUCKETS:
            raise ValueError(bucket)
        day = _bucket(self.db.dialect, bucket).label("bucket")
        duration = _stat("duration_s", False)
        select = (sa.select(day, sync_jobs.c.status, sa.func.count().label("jobs"),
                            sa.func.sum(_stat("rows_processed", True)), sa.func.sum(_stat("bytes_transferred", True)),
                            sa.func.avg(duration), sa.func.max(duration))
                  .where(*query.clauses()).group_by(day, sync_jobs.c.status).order_by(day, sync_jobs.c.status))
        with self.db.read() as conn:
            rows = conn.execute(select).all()
        return [(_date(r[0]), *r[1:]) for r in rows]

    def board(self) -> list[dict[str, Any]]:
        """Every active registration with its latest job's status, rows and error, and when its
        latest finished job ended."""
        # one index probe per table (sync_jobs_by_table_completed), not a pass over every job
        ended = sync_jobs.alias("ended")
        last_end = (sa.select(ended.c.completed_at)
                    .where(ended.c.table_id == allowed_tables.c.table_id, ended.c.completed_at.is_not(None))
                    .order_by(ended.c.completed_at.desc()).limit(1)  # not max(): SQLite would read every entry
                    .scalar_subquery())
        query = (sa.select(allowed_tables.c.table_id, allowed_tables.c.schema_name, allowed_tables.c.table_name,
                           allowed_tables.c.incremental_key, table_sync_status.c.last_sync_id,
                           table_sync_status.c.last_status, table_sync_status.c.row_count,
                           sync_jobs.c.error_message, sa.type_coerce(last_end, UtcDateTime).label("last_end"))
                 .select_from(allowed_tables)
                 .outerjoin(table_sync_status, table_sync_status.c.table_id == allowed_tables.c.table_id)
                 .outerjoin(sync_jobs, sync_jobs.c.sync_id == table_sync_status.c.last_sync_id)
                 .where(allowed_tables.c.status == "active")
                 .order_by(allowed_tables.c.schema_name, allowed_tables.c.table_name))
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


def _date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])
