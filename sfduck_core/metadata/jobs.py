"""Sync jobs (`sync_jobs`) and each table's latest outcome (`table_sync_status`).

At most one job per table is pending or running: the database enforces it with a partial unique
index, so two processes (or machines, on PostgreSQL) starting one table at once cannot both win.
Whether a job's process is alive is the caller's business (see Store.reap_dead_jobs); this module
only records what it is told.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sfduck_core.errors import JobNotFoundError, SfduckError, SyncAlreadyRunningError
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.metadata.records import JobQuery, Registration, iso, now
from sfduck_core.metadata.tables import ACTIVE_JOB_STATUSES, sync_jobs, table_sync_status

if TYPE_CHECKING:
    from sfduck_core.metadata.engine import MetadataEngine

JOB_COLUMNS = ("sync_id", "table_id", "schema_name", "table_name", "strategy", "transport", "status",
               "created_at", "started_at", "completed_at", "error_message", "stats", "filter", "trigger",
               "started_by")
_ACTIVE = sync_jobs.c.status.in_(ACTIVE_JOB_STATUSES)


def _job(row: Any) -> dict[str, Any]:
    job = dict(row)
    job["stats"] = dict(job["stats"] or {})
    for key in ("created_at", "started_at", "completed_at"):
        job[key] = iso(job[key])
    return job


def record_status(conn: Connection, reg: Registration, sync_id: str, status: str, ts: dt.datetime,
                  **fields: Any) -> None:
    """The table's latest outcome (and its latest success), in the caller's transaction."""
    values = {"last_sync_id": sync_id, "last_status": status, "last_sync_at": ts, **fields}
    if status in SUCCESS_STATUSES:
        values.update(last_success_sync_id=sync_id, last_success_at=ts)
    unknown = set(values) - set(table_sync_status.c.keys())
    if unknown:
        raise ValueError(f"not a column of table_sync_status: {sorted(unknown)}")
    done = conn.execute(table_sync_status.update().where(table_sync_status.c.table_id == reg.table_id)
                        .values(values))
    if done.rowcount == 0:
        conn.execute(table_sync_status.insert().values(table_id=reg.table_id, schema_name=reg.schema_name,
                                                       table_name=reg.table_name, **values))


class Jobs:
    def __init__(self, db: MetadataEngine) -> None:
        self.db = db

    # --- writing -----------------------------------------------------------------------------

    def start(self, reg: Registration, sync_id: str, strategy: str, transport: str, filter_sql: str | None, *,
              trigger: str, started_by: str | None, queued: bool, pid: int, host: str,
              process_started: float | None) -> None:
        """Insert a `running` job (`pending` when `queued`) unless one is already pending or
        running for the table: SyncAlreadyRunningError names it."""
        ts = now()
        try:
            with self.db.write() as conn:
                self._refuse_second(conn, reg)
                conn.execute(sync_jobs.insert().values(
                    sync_id=sync_id, table_id=reg.table_id, schema_name=reg.schema_name, table_name=reg.table_name,
                    strategy=strategy, transport=transport, status="pending" if queued else "running",
                    created_at=ts, started_at=None if queued else ts, stats={}, filter=filter_sql, pid=pid,
                    host=host, process_started=process_started, trigger=trigger, started_by=started_by,
                    cancel_requested=False))
                record_status(conn, reg, sync_id, "pending" if queued else "running", ts)
        except sa.exc.IntegrityError:  # another process inserted one after our check
            with self.db.read() as conn:
                self._refuse_second(conn, reg)
            raise

    @staticmethod
    def _refuse_second(conn: Connection, reg: Registration) -> None:
        running = conn.execute(sa.select(sync_jobs.c.sync_id, sync_jobs.c.created_at)
                               .where(sync_jobs.c.table_id == reg.table_id, _ACTIVE)).first()
        if running:
            raise SyncAlreadyRunningError(
                f"A sync of {reg.schema_name}.{reg.table_name} is already running (sync_id {running.sync_id}, "
                f"started {running.created_at:%Y-%m-%d %H:%M:%S %Z}); wait for it to finish.")

    def mark_running(self, sync_id: str) -> None:
        """A queued job got its executor slot, or a waiting one its data file (a job already
        running is left as it is)."""
        ts = now()
        with self.db.write() as conn:
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id, sync_jobs.c.status == "pending")
                         .values(status="running", started_at=ts))
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id, sync_jobs.c.status == "waiting")
                         .values(status="running", error_message=None))
            conn.execute(table_sync_status.update()
                         .where(table_sync_status.c.last_sync_id == sync_id,
                                table_sync_status.c.last_status.in_(("pending", "waiting")))
                         .values(last_status="running"))

    def mark_waiting(self, sync_id: str, message: str) -> None:
        """A running job waits for the data file another process holds; `message` names that
        process (shown as the job's message until it runs again)."""
        with self.db.write() as conn:
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id,
                                                  sync_jobs.c.status.in_(("pending", "running", "waiting")))
                         .values(status="waiting", error_message=message))
            conn.execute(table_sync_status.update()
                         .where(table_sync_status.c.last_sync_id == sync_id,
                                table_sync_status.c.last_status.in_(("pending", "running")))
                         .values(last_status="waiting"))

    def complete(self, reg: Registration, sync_id: str, stats: dict[str, Any], transport: str, *,
                 status: str = "completed", **status_fields: Any) -> None:
        """Record a success (`completed`, or `skipped` when nothing had changed) and the table's new
        status (row count, watermark...)."""
        if status not in SUCCESS_STATUSES:
            raise ValueError(f"complete records a success, not {status!r}")
        ts = now()
        with self.db.write() as conn:
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id)
                         .values(status=status, completed_at=ts, stats=stats, transport=transport))
            record_status(conn, reg, sync_id, status, ts, **status_fields)

    def fail(self, reg: Registration, sync_id: str, message: str, stats: dict[str, Any],
             status: str = "failed") -> None:
        ts = now()
        with self.db.write() as conn:
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id)
                         .values(status=status, completed_at=ts, error_message=message, stats=stats))
            record_status(conn, reg, sync_id, status, ts)

    def settle_failed(self, sync_id: str, table_id: str, message: str) -> None:
        """A job whose process is gone and whose data never committed: failed, its table freed."""
        with self.db.write() as conn:
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id, _ACTIVE)
                         .values(status="failed", completed_at=now(), error_message=message))
            conn.execute(table_sync_status.update()
                         .where(table_sync_status.c.table_id == table_id,
                                table_sync_status.c.last_sync_id == sync_id)
                         .values(last_status="failed"))

    def request_cancel(self, sync_id: str) -> None:
        with self.db.write() as conn:
            status = conn.execute(sa.select(sync_jobs.c.status).where(sync_jobs.c.sync_id == sync_id)).scalar()
            if status is None:
                raise JobNotFoundError(f"No sync job with id {sync_id!r}.")
            if status not in ACTIVE_JOB_STATUSES:
                raise SfduckError(f"Sync {sync_id} is not running (it is {status}); nothing to cancel.")
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id).values(cancel_requested=True))

    def cancel_requested(self, sync_id: str) -> bool:
        with self.db.read() as conn:
            return bool(conn.execute(sa.select(sync_jobs.c.cancel_requested)
                                     .where(sync_jobs.c.sync_id == sync_id)).scalar())

    def forget_snapshots(self, sync_ids: list[str]) -> None:
        """These jobs' lake snapshots were expired: they no longer name a version to restore."""
        if not sync_ids:
            return
        with self.db.write() as conn:
            rows = conn.execute(sa.select(sync_jobs.c.sync_id, sync_jobs.c.stats)
                                .where(sync_jobs.c.sync_id.in_(sync_ids))).all()
            for sync_id, stats in rows:
                if stats and "snapshot_id" in stats:
                    kept = {k: v for k, v in stats.items() if k != "snapshot_id"}
                    conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id).values(stats=kept))

    def prune(self, older_than: dt.datetime) -> int:
        """Delete finished jobs created before `older_than` (retention); never a table's last
        success or last job, which incremental syncs and skipping still read."""
        kept = sa.union(
            sa.select(table_sync_status.c.last_success_sync_id).where(
                table_sync_status.c.last_success_sync_id.is_not(None)),
            sa.select(table_sync_status.c.last_sync_id).where(table_sync_status.c.last_sync_id.is_not(None)))
        with self.db.write() as conn:
            return int(conn.execute(sync_jobs.delete().where(
                sync_jobs.c.created_at < older_than, ~_ACTIVE, sync_jobs.c.sync_id.not_in(kept))).rowcount)

    # --- reading -----------------------------------------------------------------------------

    def get(self, sync_id: str) -> dict[str, Any] | None:
        jobs = self._select([sync_jobs.c.sync_id == sync_id], 1)
        return jobs[0] if jobs else None

    def running(self) -> list[dict[str, Any]]:
        return self._select([_ACTIVE], 1000)

    def synced_tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every table with a successful sync on record, sorted."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(table_sync_status.c.schema_name, table_sync_status.c.table_name)
                                .where(table_sync_status.c.last_success_sync_id.is_not(None))
                                .order_by(table_sync_status.c.schema_name, table_sync_status.c.table_name))
            return [(r.schema_name, r.table_name) for r in rows]

    def tables_of(self, sync_ids: list[str], status: str | None = None) -> dict[str, str]:
        """sync_id -> table_id of these jobs (of `status`, when given)."""
        where = [sync_jobs.c.sync_id.in_(sync_ids)]
        if status is not None:
            where.append(sync_jobs.c.status == status)
        with self.db.read() as conn:
            return {r.sync_id: r.table_id for r in conn.execute(
                sa.select(sync_jobs.c.sync_id, sync_jobs.c.table_id).where(*where))}

    def unfinished(self) -> list[dict[str, Any]]:
        """Pending and running jobs with where they run (pid, host, start mark), for reaping."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(sync_jobs.c.sync_id, sync_jobs.c.table_id, sync_jobs.c.pid,
                                          sync_jobs.c.host, sync_jobs.c.process_started, sync_jobs.c.trigger)
                                .where(_ACTIVE)).mappings().all()
        return [dict(r) for r in rows]

    def history(self, schema: str | None = None, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Jobs, newest first, optionally for one table."""
        where = [] if schema is None else [sync_jobs.c.schema_name == schema, sync_jobs.c.table_name == table]
        return self._select(where, limit)

    def find(self, query: JobQuery, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of the jobs `query` selects, newest first, and how many it selects in all."""
        where = query.clauses()
        with self.db.read() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(sync_jobs).where(*where)).scalar_one()
            return self._select(where, limit, offset, conn), int(total)

    def facets(self) -> dict[str, Any]:
        """The values the job filters can take (tables, statuses, triggers, users), for pickers."""
        label = sync_jobs.c.schema_name + "." + sync_jobs.c.table_name
        with self.db.read() as conn:
            def distinct(expr: Any) -> list[str]:
                return list(conn.execute(sa.select(expr).where(expr.is_not(None)).distinct().order_by(expr))
                            .scalars())

            first = conn.execute(sa.select(sa.func.min(sync_jobs.c.created_at))).scalar()
            return {"tables": distinct(label), "statuses": distinct(sync_jobs.c.status),
                    "triggers": distinct(sync_jobs.c.trigger), "users": distinct(sync_jobs.c.started_by),
                    "first_created": _aware(first)}

    def sync_status(self, schema: str, table: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(table_sync_status).where(
                table_sync_status.c.schema_name == schema, table_sync_status.c.table_name == table)).mappings().first()
        return {k: iso(v) for k, v in row.items()} if row else None

    def _select(self, where: list[Any], limit: int, offset: int = 0,
                conn: Connection | None = None) -> list[dict[str, Any]]:
        query = (sa.select(*(sync_jobs.c[c] for c in JOB_COLUMNS)).where(*where)
                 .order_by(sync_jobs.c.created_at.desc(), sync_jobs.c.sync_id).limit(limit).offset(offset))
        if conn is not None:
            return [_job(r) for r in conn.execute(query).mappings()]
        with self.db.read() as conn:
            return [_job(r) for r in conn.execute(query).mappings()]


def _aware(value: Any) -> Any:
    """An aggregate's timestamp (SQLite answers min() in text, untouched by the column's type)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value
