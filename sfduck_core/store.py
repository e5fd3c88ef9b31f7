"""The local DuckDB file: synced tables plus sfduck's own metadata.

Synced tables live at "<SCHEMA>"."<TABLE>", named exactly as in Snowflake. The spec's metadata
tables live in the schema `sfduck_meta`, created and migrated by versioned code. DuckDB lets one
process at a time open a file, and the dashboard and the command line must share it, so nothing
here keeps the file open while idle: every operation opens, works and closes, and a process that
finds the file busy retries for a bounded time before failing with a clear message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psutil

from sfduck_core.config import Target
from sfduck_core.errors import (
    ConfigError,
    JobNotFoundError,
    NotRegisteredError,
    SfduckError,
    SyncAlreadyRunningError,
    TableNotFoundError,
)
from sfduck_core.files import private_dir
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.sqlident import quote_ident
from sfduck_core.storage import open_storage
from sfduck_core.suggest import did_you_mean

META = "sfduck_meta"

MIGRATIONS: list[list[str]] = [
    [
        f"CREATE SCHEMA IF NOT EXISTS {META}",
        f"""CREATE TABLE {META}.allowed_tables (
            table_id VARCHAR NOT NULL,
            schema_name VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            incremental_key VARCHAR,
            primary_key VARCHAR[],
            detect_deletes BOOLEAN NOT NULL DEFAULT FALSE,
            include_columns VARCHAR[],
            exclude_columns VARCHAR[],
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL)""",
        f"""CREATE TABLE {META}.sync_jobs (
            sync_id VARCHAR NOT NULL,
            table_id VARCHAR NOT NULL,
            schema_name VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            strategy VARCHAR NOT NULL,
            transport VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            started_at TIMESTAMPTZ,
            completed_at TIMESTAMPTZ,
            error_message VARCHAR,
            stats JSON,
            filter VARCHAR,
            pid INTEGER,
            host VARCHAR,
            process_started DOUBLE)""",
        f"""CREATE TABLE {META}.table_sync_status (
            table_id VARCHAR NOT NULL,
            schema_name VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            last_sync_id VARCHAR,
            last_status VARCHAR,
            last_sync_at TIMESTAMPTZ,
            last_success_sync_id VARCHAR,
            last_success_at TIMESTAMPTZ,
            row_count BIGINT,
            size_bytes BIGINT,
            watermark JSON,
            source_row_count BIGINT,
            source_last_modified TIMESTAMPTZ,
            columns JSON,
            filter VARCHAR)""",
    ],
    # which Snowflake the file's tables come from ("demo" or the account), claimed on first use
    [f"CREATE TABLE {META}.data_source (label VARCHAR NOT NULL, claimed_at TIMESTAMPTZ NOT NULL)"],
    # set by `cancel`, from any process; the sync checks it while it runs
    [f"ALTER TABLE {META}.sync_jobs ADD COLUMN cancel_requested BOOLEAN DEFAULT false"],
    # who started a job: the front end (cli, dashboard, api, schedule) and the user behind it
    [f"ALTER TABLE {META}.sync_jobs ADD COLUMN trigger VARCHAR",
     f"ALTER TABLE {META}.sync_jobs ADD COLUMN started_by VARCHAR"],
    # registrations, unregistrations and schedule changes: who and when
    [f"""CREATE TABLE {META}.audit_log (
            changed_at TIMESTAMPTZ NOT NULL,
            actor VARCHAR,
            action VARCHAR NOT NULL,
            table_id VARCHAR,
            schema_name VARCHAR,
            table_name VARCHAR,
            details JSON)"""],
    # one schedule per registered table (see sfduck_core.schedules)
    [f"""CREATE TABLE {META}.schedules (
            table_id VARCHAR NOT NULL,
            cron VARCHAR,
            timezone VARCHAR NOT NULL DEFAULT 'UTC',
            interval_s BIGINT,
            strategy VARCHAR NOT NULL,
            enabled BOOLEAN NOT NULL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            paused_reason VARCHAR,
            next_run_at TIMESTAMPTZ,
            last_run_at TIMESTAMPTZ,
            last_sync_id VARCHAR,
            last_outcome VARCHAR,
            updated_by VARCHAR,
            updated_at TIMESTAMPTZ NOT NULL)"""],
    # (once indexes on sync_jobs; a fresh file no longer creates them, see the next migration)
    [],
    # No ART index on the job rows, which every sync updates: after a kill -9 the replayed WAL left
    # an index that no longer found a `running` job, so recovery, cancel and every update of it
    # matched nothing and the table stayed blocked for ever (issue 18). A lookup scans instead;
    # time-ordered sync ids (new_sync_id) let it skip all but one row group.
    [f"DROP INDEX IF EXISTS {META}.sync_jobs_by_id",
     f"DROP INDEX IF EXISTS {META}.sync_jobs_by_table"],
    # (after the indexes are gone) a sync that found nothing changed ends `skipped`, a status of its own; it used to end
    # `completed` with `skipped: true` in its stats, so such jobs (and table statuses) are renamed
    [f"UPDATE {META}.sync_jobs SET status = 'skipped' "
     "WHERE status = 'completed' AND coalesce(stats->>'skipped', '') = 'true'",
     f"UPDATE {META}.table_sync_status SET last_status = 'skipped' WHERE last_status = 'completed' "
     f"AND last_sync_id IN (SELECT sync_id FROM {META}.sync_jobs WHERE status = 'skipped')"],
]

_migrated: set[str] = set()
_migrate_lock = threading.Lock()
# Syncs running in this process: a `running` job with our pid that is not in here is dead.
ACTIVE_SYNCS: set[str] = set()
# Failures this process could not write down (a full disk): recorded when the job is reaped.
UNRECORDED_FAILURES: dict[str, str] = {}
_job_lock = threading.Lock()




def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_sync_id() -> str:
    """A UUID version 7 (RFC 9562): the creation time in milliseconds, then random bits. Jobs are
    appended in creation order, so each row group of sync_jobs holds a narrow range of ids and
    DuckDB's min/max statistics skip all the others when a job is looked up by id (there is no
    index, see MIGRATIONS)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 + 62 used
    value = ((millis & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 68) << 64
             | 0b10 << 62 | rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class JobQuery:
    """Which jobs to list or summarize; every field narrows, none is formatted into SQL."""

    table_id: str | None = None
    schema_name: str | None = None
    table_name: str | None = None
    tables: tuple[str, ...] = ()  # "SCHEMA.TABLE" labels, any of them
    status: str | None = None
    trigger: str | None = None
    started_by: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("table_id", self.table_id), ("schema_name", self.schema_name),
                              ("table_name", self.table_name), ("status", self.status),
                              ("trigger", self.trigger), ("started_by", self.started_by)):
            if value is not None:
                clauses.append(f"{quote_ident(column)} = ?")
                params.append(value)
        if self.tables:
            clauses.append("list_contains(?, schema_name || '.' || table_name)")
            params.append(list(self.tables))
        if self.since is not None:
            clauses.append("created_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("created_at < ?")
            params.append(self.until)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True)
class Registration:
    table_id: str
    schema_name: str
    table_name: str
    status: str
    incremental_key: str | None = None
    primary_key: tuple[str, ...] = ()
    detect_deletes: bool = False
    include_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    # set when this registration changed the column selection: the next sync reloads the table
    full_sync_required: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "table_id": self.table_id,
            "table_name": self.table_name,
            "schema_name": self.schema_name,
            "status": self.status,
            "incremental_key": self.incremental_key,
            "primary_key": list(self.primary_key),
            "detect_deletes": self.detect_deletes,
            "include_columns": list(self.include_columns),
            "exclude_columns": list(self.exclude_columns),
            "full_sync_required": self.full_sync_required,
        }


@dataclass(frozen=True)
class LakeSnapshot:
    snapshot_id: int
    snapshot_time: dt.datetime
    table_id: str | None  # the table whose sync committed it; None: bookkeeping (job rows, registrations)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def process_start_mark(pid: int) -> float | None:
    """When `pid` started, in a unit no clock step can move: clock ticks since boot on Linux
    (field 22 of /proc/PID/stat), the wall-clock start time elsewhere. None: no such process.

    A wall-clock start time (psutil's create_time) moves when the clock is stepped, which made a
    live sync look like a dead one whose pid had been reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else _wall_clock_start(pid)
    except OSError:
        return _wall_clock_start(pid)
    return float(stat[stat.rindex(b")") + 2:].split()[19])  # after "pid (comm) ", field 3 is index 0


def _wall_clock_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class Store:
    """sfduck's metadata and synced tables in one DuckDB file.

    One rule for connections: a public method opens its own (one short operation, so other
    processes wait as little as possible); a method that takes part in a caller's transaction
    takes the connection as its first argument and never commits.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0, memory_limit: str = "256MB",
                 keep_warm_s: float = 0.0, target: Target | None = None):
        """`keep_warm_s`: how long the file stays open in this process after a use (a server's
        choice, see sfduck_core.storage); 0 closes it with the last connection. `target` a lake:
        `path` is then only the state folder's anchor (job notes, disk-space checks)."""
        if target is None or target.path is not None:  # a DuckDB file, which `path` names
            target = Target("duckdb", path=Path(path))
        self.storage = open_storage(target, lock_timeout_s=lock_timeout_s, memory_limit=memory_limit,
                                    keep_warm_s=keep_warm_s)
        self.target = target
        self.path = self.storage.path or Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.memory_limit = memory_limit
        self.keep_warm_s = keep_warm_s
        # beside the DuckDB file (for a lake: the state folder that SFDUCK_DUCKDB_PATH names)
        self.notes_dir = Path(path).parent / "job-notes"

    # --- connections -----------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the storage for one operation (see Storage.connect), its metadata migrated first:
        until then even a read takes a writer's turn."""
        migrated = self.storage.key in _migrated
        with self.storage.connect(read_only=read_only and migrated) as con:
            self._migrate(con)
            yield con

    def ping(self, wait_s: float = 2.0) -> None:
        """Open the storage and read it, waiting at most `wait_s` for another process (health checks)."""
        quick = Store(self.path, min(wait_s, self.lock_timeout_s), self.memory_limit, target=self.target)
        with quick.connect(read_only=True) as con:
            con.execute(f"SELECT count(*) FROM {META}.schema_version").fetchone()

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        key = self.storage.key
        if key in _migrated:
            return
        with _migrate_lock:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {META}")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {META}.schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            current = con.execute(f"SELECT coalesce(max(version), 0) FROM {META}.schema_version").fetchone()[0]
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                con.execute("BEGIN")
                try:
                    for sql in statements:
                        statement = self.storage.statement(sql)
                        if statement:
                            con.execute(statement)
                    con.execute(f"INSERT INTO {META}.schema_version VALUES (?, ?)", [version, now()])
                    con.execute("COMMIT")
                except Exception:
                    con.execute("ROLLBACK")
                    raise
            self.storage.tune_metadata(con, META)
            _migrated.add(key)

    # --- ownership -------------------------------------------------------------------------

    def claim_source(self, label: str) -> None:
        """Refuse to mix Snowflakes in one file: demo data beside an account's, or two accounts.

        A file that holds no registration yet (a fresh one, or one from before this check) is
        claimed by whoever uses it, so trying the demo first never locks out a real account."""
        with self.connect() as con:
            row = con.execute(f"SELECT label FROM {META}.data_source LIMIT 1").fetchone()
            if row is not None and row[0] == label:
                return
            registered = con.execute(f"SELECT count(*) FROM {META}.allowed_tables").fetchone()[0]
            if row is None or not registered:
                con.execute("BEGIN")
                con.execute(f"DELETE FROM {META}.data_source")
                con.execute(f"INSERT INTO {META}.data_source VALUES (?, ?)", [label, now()])
                con.execute("COMMIT")
                return
        if row[0] != label:
            def name(x: str) -> str:
                return "the demo emulator" if x == "demo" else f"the Snowflake account {x!r}"

            raise ConfigError(
                f"The {self.target.describe()} holds tables from {name(row[0])}, but sfduck is configured for "
                f"{name(label)}. Point {self.storage.setting} at another "
                f"{self.storage.label} (or fix the configuration that was not found); nothing was changed."
            )

    # --- registrations ---------------------------------------------------------------------

    def get_registration(self, schema: str, table: str) -> Registration | None:
        with self.connect(read_only=True) as con:
            return self._registration(con, schema, table)

    @staticmethod
    def _registration(con: duckdb.DuckDBPyConnection, schema: str, table: str | None = None, *,
                      table_id: str | None = None) -> Registration | None:
        """One registration, by name or (with `table_id`) by id."""
        where, params = (("table_id = ?", [table_id]) if table_id is not None
                         else ("schema_name = ? AND table_name = ?", [schema, table]))
        row = con.execute(
            f"SELECT table_id, schema_name, table_name, status, incremental_key, primary_key, "
            f"detect_deletes, include_columns, exclude_columns FROM {META}.allowed_tables WHERE {where}",
            params,
        ).fetchone()
        if not row:
            return None
        return Registration(row[0], row[1], row[2], row[3], row[4], tuple(row[5] or ()), bool(row[6]),
                            tuple(row[7] or ()), tuple(row[8] or ()))

    def registration_by_id(self, table_id: str) -> Registration:
        with self.connect() as con:
            reg = self._registration(con, "", table_id=table_id)
        if reg is None:
            raise TableNotFoundError(f"No registered table with id {table_id!r}.")
        return reg

    def require_active(self, schema: str, table: str) -> Registration:
        reg = self.get_registration(schema, table)
        if reg is None or reg.status != "active":
            known = [f"{r.schema_name}.{r.table_name}" for r in self.list_registrations()]
            raise NotRegisteredError(schema, table, f"{schema}.{table} is not registered for syncing."
                                     + did_you_mean(f"{schema}.{table}", known))
        return reg

    def table_history(self, schema: str, table: str) -> list[dict[str, Any]]:
        """A table's jobs, newest first; a table never registered nor synced is an error (a
        mistyped name is not an empty history)."""
        jobs = self.history(schema, table)
        if not jobs and self.get_registration(schema, table) is None:
            known = [f"{r.schema_name}.{r.table_name}" for r in self.list_registrations(include_inactive=True)]
            raise TableNotFoundError(f"{schema}.{table} was never registered, so it has no sync history."
                                     + did_you_mean(f"{schema}.{table}", known))
        return jobs

    def upsert_registration(self, schema: str, table: str, *, incremental_key: str | None,
                            primary_key: Sequence[str], detect_deletes: bool,
                            include_columns: Sequence[str], exclude_columns: Sequence[str]) -> Registration:
        """Register (or re-activate) a table; registering again only updates its settings."""
        with self.connect() as con:
            con.execute("BEGIN")
            existing = self._registration(con, schema, table)
            values = [incremental_key, list(primary_key), detect_deletes, list(include_columns),
                      list(exclude_columns), now()]
            if existing:
                con.execute(
                    f"UPDATE {META}.allowed_tables SET status = 'active', incremental_key = ?, primary_key = ?, "
                    "detect_deletes = ?, include_columns = ?, exclude_columns = ?, updated_at = ? "
                    "WHERE table_id = ?",
                    [*values, existing.table_id],
                )
                table_id = existing.table_id
                reselected = (tuple(include_columns), tuple(exclude_columns)) != (
                    existing.include_columns, existing.exclude_columns)
                if reselected:
                    # an incremental merge would keep a newly excluded column's old values and leave a
                    # newly included one NULL in old rows: forget the watermark and the source
                    # fingerprint, so the next sync (of either strategy) rebuilds the table
                    con.execute(
                        f"UPDATE {META}.table_sync_status SET watermark = NULL, source_last_modified = NULL, "
                        "source_row_count = NULL WHERE table_id = ?", [table_id])
            else:
                reselected = False
                table_id = str(uuid.uuid4())
                con.execute(
                    f"INSERT INTO {META}.allowed_tables (table_id, schema_name, table_name, status, "
                    "incremental_key, primary_key, detect_deletes, include_columns, exclude_columns, "
                    "updated_at, created_at) VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)",
                    [table_id, schema, table, *values, values[-1]],
                )
            con.execute("COMMIT")
            reg = self._registration(con, schema, table)
        assert reg is not None
        synced = self.sync_status(schema, table) is not None
        return dataclasses.replace(reg, full_sync_required=reselected and synced)

    def deactivate(self, schema: str, table: str) -> Registration:
        with self.connect() as con:
            reg = self._registration(con, schema, table)
            if reg is None:
                raise NotRegisteredError(schema, table, f"{schema}.{table} is not registered.")
            con.execute(
                f"UPDATE {META}.allowed_tables SET status = 'inactive', updated_at = ? WHERE table_id = ?",
                [now(), reg.table_id],
            )
            reg = self._registration(con, schema, table)
        assert reg is not None
        return reg

    def list_registrations(self, include_inactive: bool = False) -> list[Registration]:
        where = "" if include_inactive else "WHERE status = 'active'"
        with self.connect(read_only=True) as con:
            rows = con.execute(
                f"SELECT schema_name, table_name FROM {META}.allowed_tables {where} "
                "ORDER BY schema_name, table_name"
            ).fetchall()
            return [r for s, t in rows if (r := self._registration(con, s, t))]

    # --- jobs ------------------------------------------------------------------------------

    def start_job(self, reg: Registration, strategy: str, transport: str, filter_sql: str | None, *,
                  trigger: str = "cli", started_by: str | None = None, queued: bool = False) -> str:
        """Insert a `running` job (`pending` when `queued` for an executor slot) unless one is
        already pending or running for this table (checked atomically)."""
        sync_id = new_sync_id()
        with _job_lock, self.connect() as con:
            self._reap_dead_jobs(con)
            running = con.execute(
                f"SELECT sync_id, created_at FROM {META}.sync_jobs "
                "WHERE table_id = ? AND status IN ('pending', 'running')",
                [reg.table_id],
            ).fetchone()
            if running:
                raise SyncAlreadyRunningError(
                    f"A sync of {reg.schema_name}.{reg.table_name} is already running (sync_id {running[0]}, "
                    f"started {running[1]:%Y-%m-%d %H:%M:%S %Z}); wait for it to finish."
                )
            ts = now()
            con.execute(
                f"INSERT INTO {META}.sync_jobs (sync_id, table_id, schema_name, table_name, strategy, transport, "
                "status, created_at, stats, filter, pid, host, process_started, trigger, started_by) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, '{}', ?, ?, ?, ?, ?, ?)",
                [sync_id, reg.table_id, reg.schema_name, reg.table_name, strategy, transport, ts, filter_sql,
                 os.getpid(), socket.gethostname(), process_start_mark(os.getpid()), trigger, started_by],
            )
            ACTIVE_SYNCS.add(sync_id)
            if not queued:
                con.execute(f"UPDATE {META}.sync_jobs SET status = 'running', started_at = ? WHERE sync_id = ?",
                            [ts, sync_id])
            self._record_status(con, reg, sync_id, "pending" if queued else "running", ts)
        self._reserve_note(sync_id)
        return sync_id

    def mark_running(self, sync_id: str) -> None:
        """A queued job got its executor slot (a job already running is left as it is)."""
        ts = now()
        with self.connect() as con:
            con.execute(f"UPDATE {META}.sync_jobs SET status = 'running', started_at = ? "
                        "WHERE sync_id = ? AND status = 'pending'", [ts, sync_id])
            con.execute(f"UPDATE {META}.table_sync_status SET last_status = 'running' "
                        "WHERE last_sync_id = ? AND last_status = 'pending'", [sync_id])

    def audit(self, action: str, actor: str | None, reg: Registration | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Record who changed what (registrations, schedules); never read back by sfduck itself."""
        with self.connect() as con:
            con.execute(
                f"INSERT INTO {META}.audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                [now(), actor, action, reg.table_id if reg else None, reg.schema_name if reg else None,
                 reg.table_name if reg else None, json.dumps(details, default=_iso) if details else None],
            )

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.connect() as con:
            cur = con.execute(f"SELECT * FROM {META}.audit_log ORDER BY changed_at DESC LIMIT ?", [limit])
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [{k: _iso(v) for k, v in zip(names, row, strict=True)} for row in rows]

    def _record_status(self, con: duckdb.DuckDBPyConnection, reg: Registration, sync_id: str, status: str,
                       ts: dt.datetime, **fields: Any) -> None:
        exists = con.execute(
            f"SELECT 1 FROM {META}.table_sync_status WHERE table_id = ?", [reg.table_id]
        ).fetchone()
        if not exists:
            con.execute(
                f"INSERT INTO {META}.table_sync_status (table_id, schema_name, table_name) VALUES (?, ?, ?)",
                [reg.table_id, reg.schema_name, reg.table_name],
            )
        values = {"last_sync_id": sync_id, "last_status": status, "last_sync_at": ts, **fields}
        if status in SUCCESS_STATUSES:
            values.update(last_success_sync_id=sync_id, last_success_at=ts)
        assignments = ", ".join(f"{quote_ident(k)} = ?" for k in values)
        con.execute(
            f"UPDATE {META}.table_sync_status SET {assignments} WHERE table_id = ?",
            [*(json.dumps(v, default=_iso) if isinstance(v, dict | list) else v for v in values.values()),
             reg.table_id],
        )

    def complete_job(self, con: duckdb.DuckDBPyConnection, reg: Registration, sync_id: str,
                     stats: dict[str, Any], transport: str, *, status: str = "completed",
                     **status_fields: Any) -> None:
        """Mark success (`completed`, or `skipped` when nothing had changed) inside the caller's
        transaction, so data and metadata commit together. In a lake the commit's snapshot is
        labelled with the sync_id, which is how the job finds its snapshot later (`snapshot_id` in
        its stats) without a second write."""
        if status not in SUCCESS_STATUSES:
            raise ValueError(f"complete_job records a success, not {status!r}")
        ts = now()
        if self.storage.capabilities.snapshots:
            self.storage.label_commit(con, sync_id, f"sfduck sync of {reg.schema_name}.{reg.table_name}")
        con.execute(
            f"UPDATE {META}.sync_jobs SET status = ?, completed_at = ?, stats = ?, transport = ? "
            "WHERE sync_id = ?",
            [status, ts, json.dumps(stats, default=_iso), transport, sync_id],
        )
        self._record_status(con, reg, sync_id, status, ts, **status_fields)

    def request_cancel(self, sync_id: str) -> dict[str, Any]:
        """Ask a running sync to stop; it ends `cancelled` at its next check (within seconds)."""
        self.reap_dead_jobs()
        with self.connect() as con:
            status = con.execute(f"SELECT status FROM {META}.sync_jobs WHERE sync_id = ?", [sync_id]).fetchone()
            if status is None:
                raise JobNotFoundError(f"No sync job with id {sync_id!r}.")
            if status[0] not in ("pending", "running"):
                raise SfduckError(f"Sync {sync_id} is not running (it is {status[0]}); nothing to cancel.")
            con.execute(f"UPDATE {META}.sync_jobs SET cancel_requested = true WHERE sync_id = ?", [sync_id])
        job = self.get_job(sync_id)
        assert job is not None
        return job

    def cancel_requested(self, sync_id: str) -> bool:
        with self.connect(read_only=True) as con:
            row = con.execute(f"SELECT cancel_requested FROM {META}.sync_jobs WHERE sync_id = ?", [sync_id]).fetchone()
        return bool(row and row[0])

    def fail_job(self, reg: Registration, sync_id: str, message: str, stats: dict[str, Any],
                 status: str = "failed") -> None:
        """Record the failure; if even that fails (the disk that made the sync fail is still full),
        keep the message in this process, so the job is reaped with its real cause later."""
        ts = now()
        try:
            with self.connect() as con:
                con.execute(
                    f"UPDATE {META}.sync_jobs SET status = ?, completed_at = ?, error_message = ?, stats = ? "
                    "WHERE sync_id = ?",
                    [status, ts, message, json.dumps(stats, default=_iso), sync_id],
                )
                self._record_status(con, reg, sync_id, status, ts)
        except (duckdb.Error, OSError, SfduckError):
            UNRECORDED_FAILURES[sync_id] = message
            self._write_note(sync_id, message)

    def finish(self, sync_id: str) -> None:
        ACTIVE_SYNCS.discard(sync_id)
        if sync_id not in UNRECORDED_FAILURES:
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    # A failure that could not be written to the store (its disk was full) must outlive the process:
    # each job reserves a small file when it starts, and its message is written into that space,
    # which needs no free block; whoever reaps the job reads it there (see _reap_dead_jobs).
    NOTE_BYTES = 4096

    def _note(self, sync_id: str) -> Path:
        return self.notes_dir / f"{sync_id}.failure"

    def _reserve_note(self, sync_id: str) -> None:
        with contextlib.suppress(OSError):  # best effort: without it, a lost failure says "stopped"
            private_dir(self.notes_dir)
            fd = os.open(self._note(sync_id), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.NOTE_BYTES)
            finally:
                os.close(fd)

    def _write_note(self, sync_id: str, message: str) -> None:
        data = message.encode()[: self.NOTE_BYTES - 4].decode(errors="ignore").encode()
        with contextlib.suppress(OSError):
            fd = os.open(self._note(sync_id), os.O_WRONLY)  # never created here: its space is reserved
            try:
                os.pwrite(fd, data.ljust(self.NOTE_BYTES, b"\0"), 0)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_note(self, sync_id: str) -> str | None:
        try:
            text = self._note(sync_id).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            return None
        return text or None

    def _reap_dead_jobs(self, con: duckdb.DuckDBPyConnection) -> None:
        """A job left `running` by a process that died is failed, so it no longer blocks its table."""
        rows = con.execute(
            f"SELECT sync_id, table_id, pid, host, process_started, trigger FROM {META}.sync_jobs "
            "WHERE status IN ('pending', 'running')"
        ).fetchall()
        me = socket.gethostname()
        for sync_id, table_id, pid, host, started, trigger in rows:
            if host != me or _job_alive(sync_id, pid, started):
                continue
            ts = now()
            message = (UNRECORDED_FAILURES.get(sync_id) or self._read_note(sync_id)
                       or _stopped_message(pid, trigger))
            con.execute(
                f"UPDATE {META}.sync_jobs SET status = 'failed', completed_at = ?, error_message = ? "
                "WHERE sync_id = ?",
                [ts, message, sync_id],
            )
            con.execute(
                f"UPDATE {META}.table_sync_status SET last_status = 'failed' "
                "WHERE table_id = ? AND last_sync_id = ?",
                [table_id, sync_id],
            )
            UNRECORDED_FAILURES.pop(sync_id, None)
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    def reap_dead_jobs(self) -> None:
        with _job_lock, self.connect() as con:
            self._reap_dead_jobs(con)

    def get_job(self, sync_id: str) -> dict[str, Any] | None:
        jobs = self._jobs("WHERE sync_id = ?", [sync_id])
        return jobs[0] if jobs else None

    def running_jobs(self) -> list[dict[str, Any]]:
        return self._jobs("WHERE status IN ('pending', 'running')", [])

    def history(self, schema: str | None = None, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Jobs, newest first, optionally for one table."""
        if schema is None:
            return self._jobs("", [], limit)
        return self._jobs("WHERE schema_name = ? AND table_name = ?", [schema, table], limit)

    def find_jobs(self, query: JobQuery, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of the jobs `query` selects, newest first, and how many it selects in all."""
        where, params = query.where()
        with self.connect(read_only=True) as con:
            total = int(con.execute(f"SELECT count(*) FROM {META}.sync_jobs {where}", params).fetchone()[0])
            return self._jobs(where, params, limit, offset, con), total

    def job_facets(self) -> dict[str, Any]:
        """The values the job filters can take (tables, statuses, triggers, users), for pickers."""
        with self.connect(read_only=True) as con:
            def distinct(expr: str) -> list[str]:
                rows = con.execute(f"SELECT DISTINCT {expr} FROM {META}.sync_jobs WHERE {expr} IS NOT NULL "
                                   "ORDER BY 1").fetchall()
                return [r[0] for r in rows]

            first = con.execute(f"SELECT min(created_at) FROM {META}.sync_jobs").fetchone()[0]
            return {"tables": distinct("schema_name || '.' || table_name"), "statuses": distinct("status"),
                    "triggers": distinct("trigger"), "users": distinct("started_by"), "first_created": first}

    def prune_jobs(self, older_than: dt.datetime) -> int:
        """Delete finished jobs created before `older_than` (retention); never a table's last
        success, which incremental syncs and skipping still read."""
        with self.connect() as con:
            return int(con.execute(
                f"DELETE FROM {META}.sync_jobs WHERE created_at < ? AND status NOT IN ('pending', 'running') "
                f"AND sync_id NOT IN (SELECT last_success_sync_id FROM {META}.table_sync_status "
                "WHERE last_success_sync_id IS NOT NULL) "
                f"AND sync_id NOT IN (SELECT last_sync_id FROM {META}.table_sync_status "
                "WHERE last_sync_id IS NOT NULL)",
                [older_than]).fetchone()[0])

    def _jobs(self, where: str, params: list[Any], limit: int = 1000, offset: int = 0,
              con: duckdb.DuckDBPyConnection | None = None) -> list[dict[str, Any]]:
        with contextlib.nullcontext(con) if con is not None else self.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT sync_id, table_id, schema_name, table_name, strategy, transport, status, created_at, "
                "started_at, completed_at, error_message, stats, filter, trigger, started_by "
                f"FROM {META}.sync_jobs {where} ORDER BY created_at DESC, sync_id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
            snapshots = self.storage.sync_snapshots(con) if self.storage.capabilities.snapshots and rows else {}
        jobs = []
        for row in rows:
            job = dict(zip(names, row, strict=True))
            job["stats"] = json.loads(job["stats"]) if job["stats"] else {}
            if job["sync_id"] in snapshots:
                job["stats"]["snapshot_id"] = snapshots[job["sync_id"]]
            for key in ("created_at", "started_at", "completed_at"):
                job[key] = _iso(job[key])
            jobs.append(job)
        return jobs

    def sync_status(self, schema: str, table: str) -> dict[str, Any] | None:
        with self.connect(read_only=True) as con:
            cur = con.execute(
                f"SELECT * FROM {META}.table_sync_status WHERE schema_name = ? AND table_name = ?", [schema, table]
            )
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
        if not row:
            return None
        status = dict(zip(names, row, strict=True))
        for key in ("watermark", "columns"):
            status[key] = json.loads(status[key]) if status[key] else None
        return {k: _iso(v) for k, v in status.items()}

    # --- lake retention --------------------------------------------------------------------

    def lake_snapshots(self) -> list[LakeSnapshot]:
        """Every snapshot of the lake, oldest first, with the table whose completed sync committed it
        (None: bookkeeping, a skipped sync's included)."""
        self.storage.require("retention", "Retention")
        with self.connect(read_only=True) as con:
            snapshots = self.storage.snapshots(con)
            by_sync = self.storage.sync_snapshots(con)
            # a skipped sync's commit holds only its job row: the table's version is the completed one before it
            tables = dict(con.execute(f"SELECT sync_id, table_id FROM {META}.sync_jobs WHERE list_contains(?, sync_id) "
                                      "AND status = 'completed'", [list(by_sync)]).fetchall()) if by_sync else {}
        table_of = {snapshot: tables.get(sync_id) for sync_id, snapshot in by_sync.items()}
        return [LakeSnapshot(s.snapshot_id, s.snapshot_time, table_of.get(s.snapshot_id)) for s in snapshots]

    def expire_lake_snapshots(self, snapshot_ids: Sequence[int],
                              orphan_grace: dt.timedelta = dt.timedelta(hours=6)) -> dict[str, int]:
        """Expire these snapshots and delete the files only they used (see Storage.expire_snapshots)."""
        self.storage.require("retention", "Retention")
        with self.connect() as con:
            return self.storage.expire_snapshots(con, snapshot_ids, orphan_grace)

    # --- synced tables ---------------------------------------------------------------------

    def synced_tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every table sfduck has loaded, for previews."""
        with self.connect(read_only=True) as con:
            return self.storage.synced_tables(con)


def _stopped_message(pid: int | None, trigger: str | None) -> str:
    """Why a job that nobody runs any more ended: the server or the command that ran it stopped."""
    who = "sfduck command" if trigger in (None, "cli") else "server"
    return (f"The {who} stopped during this sync (process {pid} ended before it finished); the table was "
            "left as it was before the sync, and it can be synced again.")


def _job_alive(sync_id: str, pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    mark = process_start_mark(pid)
    if mark is None:
        return False
    # a live process with another start mark reused the pid of the one that died
    same_process = started is None or abs(mark - started) < 1e-6
    if same_process and pid == os.getpid():
        return sync_id in ACTIVE_SYNCS
    return same_process
