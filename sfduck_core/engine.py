"""The sync engine: one Snowflake table into one DuckDB table, never leaving it half-written.

Every sync loads into a staging table inside one DuckDB transaction and swaps it in (full) or
merges it by key (incremental) before committing, together with the job's metadata. A crash at
any moment therefore rolls back to the previous version of the table. The transfer itself happens
over one of two transports: `stage` (the spec's COPY INTO a temporary stage as Parquet, GET, then
`read_parquet`) or `arrow` (the connector's Arrow result batches streamed straight in).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sfduck_core.config import Settings, SnowflakeSettings
from sfduck_core.errors import (
    ConfigError,
    Holder,
    JobNotFoundError,
    MissingIncrementalKeyError,
    NameCollisionError,
    SfduckError,
    SyncCancelledError,
    SyncFailedError,
    TableNotFoundError,
)
from sfduck_core.filters import SafeFilter, validate_filter
from sfduck_core.incremental import (
    Watermark,
    append,
    apply_drift,
    backfill,
    delete_missing,
    read_watermark,
    stale_rows,
    upsert,
)
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.progress import ProgressCallback, SyncProgress, ignore_progress
from sfduck_core.source import SnowflakeSource, TableDescription, TableInfo
from sfduck_core.sqlident import case_collisions, local_name_key, qualified, quote_ident, validate_identifier
from sfduck_core.stats import SyncStats
from sfduck_core.storage import WaitPolicy, waiting_for_data
from sfduck_core.store import Registration, Store
from sfduck_core.suggest import did_you_mean
from sfduck_core.transfer import (
    ArrowSpool,
    Transfer,
    TransferResult,
    load_arrow_spool,
    out_of_space,
    spool_arrow_batches,
)
from sfduck_core.typemap import ColumnPlan

TRANSPORTS = ("auto", "stage", "arrow")
SnowflakeProvider = Callable[[], SnowflakeSettings]
STRATEGIES = ("full", "incremental")
RESTORE = "restore"  # the strategy recorded for a job that brings back an earlier sync's version
TRIGGERS = ("cli", "dashboard", "api", "schedule")
JobListener = Callable[[dict[str, Any]], None]
_log = logging.getLogger("sfduck.engine")


@dataclass
class SyncRequest:
    schema_name: str
    table_name: str
    strategy: str = "full"
    transport: str = "auto"
    where: str | None = None
    incremental_key: str | None = None
    primary_key: Sequence[str] | None = None
    detect_deletes: bool | None = None
    force: bool = False
    trigger: str = "cli"  # what started it: one of TRIGGERS
    started_by: str | None = None  # the user behind the trigger (None for the command line)


@dataclass
class SyncRun:
    """A sync whose job row exists (so a second one is refused) and that is ready to run."""

    engine: SyncEngine
    request: SyncRequest
    registration: Registration
    sync_id: str
    safe_filter: SafeFilter | None
    on_progress: ProgressCallback
    progress: SyncProgress = field(init=False)
    started: float = field(init=False, default_factory=time.monotonic)
    _stop_reason: str | None = field(init=False, default=None)
    _checked_at: float = field(init=False, default=0.0)
    _thread: int | None = field(init=False, default=None)
    data_committed: bool = field(init=False, default=False)  # the data's COMMIT is done, whatever follows

    def __post_init__(self) -> None:
        self.progress = SyncProgress(self.sync_id, self.request.schema_name, self.request.table_name)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def stop_reason(self, fresh: bool = False) -> str | None:
        """Why the sync must stop now (an admin's cancel, the time limit), or None. The cancel
        flag lives in the DuckDB file, so any process can set it; watchers read it at most once a
        second, the sync's own steps (`fresh`) every time."""
        if self._stop_reason is None:
            limit = self.engine.settings.sync_timeout_s
            if time.monotonic() - self.started > limit:
                self._stop_reason = (f"Stopped after {limit:g} s (SFDUCK_SYNC_TIMEOUT); the table was left as "
                                     "it was before the sync.")
            elif fresh or time.monotonic() - self._checked_at >= 1.0:
                self._checked_at = time.monotonic()
                with contextlib.suppress(SfduckError, duckdb.Error):  # a busy file: check next time
                    if self.engine.store.cancel_requested(self.sync_id):
                        self._stop_reason = "Cancelled by an admin; the table was left as it was before the sync."
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """Stop this sync, in this process, for `reason` (what its job will say): at its next check,
        as a cancel from any process does through the store."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def report(self, **changes: Any) -> None:
        """Publish progress; in the sync's own thread also the place where a cancel takes effect."""
        self.progress = self.progress.advance(**changes)
        self.on_progress(self.progress)
        if (threading.get_ident() == self._thread and self.progress.phase not in ("done", "failed", "cancelled")
                and self.stop_reason(fresh=True)):
            raise SyncCancelledError(self._stop_reason)

    def run(self) -> dict[str, Any]:
        return self.engine._execute(self)

    def wait_policy(self) -> WaitPolicy:
        """How this sync waits for a DuckDB file another process holds (SFDUCK_DATA_WAIT): its job
        shows `waiting` naming the holder, runs again when the file is let go, and stops waiting
        when cancelled."""
        store, wait_s = self.engine.store, self.engine.settings.data_wait_s

        def on_wait(holder: Holder | None) -> None:
            message = waiting_message(holder, wait_s)
            store.mark_waiting(self.sync_id, message)
            self.report(phase="waiting", message=message)

        def on_resume() -> None:
            store.mark_running(self.sync_id)
            self.report(phase="starting", message="The DuckDB file was let go; syncing")

        return WaitPolicy(wait_s=wait_s, on_wait=on_wait, should_stop=lambda: self.stop_reason() is not None,
                          on_resume=on_resume)


def waiting_message(holder: Holder | None, wait_s: float) -> str:
    """What a waiting job says: whom it waits for, and until when."""
    who = f"open in {holder}" if holder is not None else "open in another process"
    return (f"Waiting: the DuckDB file is {who}; the sync starts by itself when it lets go "
            f"(for up to {wait_s:g} s, SFDUCK_DATA_WAIT).")


class SyncEngine:
    """The one entry point front ends use; it owns settings, the store and the source sessions."""

    def __init__(self, settings: Settings, snowflake: SnowflakeProvider | None = None, store: Store | None = None,
                 on_job_end: JobListener | None = None):
        """`snowflake` says where to connect, asked once on first use (so that an embedded
        emulator starts only when needed); by default the configured account. `on_job_end` hears
        about every job that ends (completed, skipped, failed or cancelled), e.g. to notify someone; what it
        raises is logged and never changes the sync's outcome."""
        self.settings = settings
        self.on_job_end = on_job_end
        self.store = store or Store(settings.duckdb_path, settings.lock_timeout_s, settings.duckdb_memory_limit,
                                    target=settings.storage, metadata_url=settings.metadata_url)
        self._provider = snowflake or self._configured_account
        self._snowflake: SnowflakeSettings | None = None
        self._lock = threading.Lock()

    def _configured_account(self) -> SnowflakeSettings:
        if self.settings.demo:
            raise ConfigError("No Snowflake account is configured (SNOWFLAKE_ACCOUNT); demo mode runs on the "
                              "embedded emulator, which the sfduck command and the dashboard start.")
        return self.settings.snowflake

    # --- Snowflake side --------------------------------------------------------------------

    @property
    def snowflake(self) -> SnowflakeSettings:
        with self._lock:
            if self._snowflake is None:
                self._snowflake = self._provider()
            return self._snowflake

    def source(self) -> SnowflakeSource:
        return SnowflakeSource(self.snowflake)

    def ping_snowflake(self) -> None:
        """Log in and run a trivial query: raises SourceError (with the reason) when that fails."""
        with self.source() as src:
            src.query("SELECT 1", doing="checking that Snowflake answers")

    def default_schema(self, schema: str | None = None) -> str:
        schema = schema or self.snowflake.schema
        if not schema:
            raise SfduckError("No schema given and SNOWFLAKE_SCHEMA is not set.")
        return validate_identifier(schema, "schema name")

    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        with self.source() as src:
            return src.list_tables(self.default_schema(schema))

    def describe(self, schema: str, table: str) -> TableDescription:
        with self.source() as src:
            return src.describe(self.default_schema(schema), validate_identifier(table, "table name"))

    # --- registration ----------------------------------------------------------------------

    def register(self, schema: str, table: str, *, incremental_key: str | None = None,
                 primary_key: Sequence[str] | None = None, detect_deletes: bool = False,
                 include_columns: Sequence[str] = (), exclude_columns: Sequence[str] = (),
                 actor: str | None = None) -> Registration:
        """Verify the table exists in Snowflake, check the chosen columns, then record it (and who
        did, `actor`, in the audit log)."""
        self.store.claim_source(self.settings.source_label)
        desc = self.describe(schema, table)
        names = desc.column_names
        key = tuple(primary_key) if primary_key else desc.primary_key
        for label, cols in (("primary key", key), ("incremental key", [incremental_key] if incremental_key else []),
                            ("column", include_columns), ("excluded column", exclude_columns)):
            unknown = [c for c in cols if c not in names]
            if unknown:
                raise TableNotFoundError(
                    f"Unknown {label} {', '.join(map(repr, unknown))} for {schema}.{table}; "
                    f"its columns are: {', '.join(names)}.{did_you_mean(unknown[0], names)}"
                )
        if include_columns and exclude_columns:
            raise SfduckError("Give either the columns to keep or the columns to exclude, not both.")
        self._refuse_name_collisions(desc.schema_name, desc.table_name)
        kept = include_columns or [c for c in names if c not in set(exclude_columns)]
        _refuse_column_collisions(desc.schema_name, desc.table_name, kept)
        protected = set(key) | ({incremental_key} if incremental_key else set())
        dropped = protected & set(exclude_columns) if exclude_columns else protected - set(include_columns or names)
        if dropped:
            raise SfduckError(
                f"Primary-key and incremental-key columns cannot be left out: {', '.join(sorted(dropped))}."
            )
        reg = self.store.upsert_registration(
            desc.schema_name, desc.table_name, incremental_key=incremental_key, primary_key=key,
            detect_deletes=detect_deletes, include_columns=include_columns, exclude_columns=exclude_columns,
        )
        self.store.audit("register", actor, reg, reg.as_dict())
        return reg

    def _refuse_name_collisions(self, schema: str, table: str) -> None:
        """Another registered table that DuckDB would store under the same name would be
        overwritten by every sync of this one, silently."""
        key = (local_name_key(schema), local_name_key(table))
        for other in self.store.list_registrations(include_inactive=True):
            if ((local_name_key(other.schema_name), local_name_key(other.table_name)) == key
                    and (other.schema_name, other.table_name) != (schema, table)):
                raise NameCollisionError(
                    f"{schema}.{table} and the registered {other.schema_name}.{other.table_name} differ only in "
                    "case, and DuckDB names ignore case: both would be one local table. Sync one of them "
                    "through a Snowflake view with another name (CREATE VIEW ... AS SELECT * FROM ...)."
                )

    def unregister(self, schema: str, table: str, actor: str | None = None) -> Registration:
        """Mark inactive; history and synced data stay for auditing."""
        reg = self.store.deactivate(self.default_schema(schema), validate_identifier(table, "table name"))
        self.store.audit("unregister", actor, reg)
        return reg

    # --- syncing ---------------------------------------------------------------------------

    def prepare(self, request: SyncRequest, on_progress: ProgressCallback = ignore_progress,
                queued: bool = False) -> SyncRun:
        """Validate everything that can be validated locally, then create the job (`pending` when
        `queued`: it waits for an executor slot and becomes `running` when it starts).

        Bad input fails here, before Snowflake is contacted and before anything is written.
        """
        if request.strategy not in STRATEGIES:
            raise SfduckError(f"Unknown strategy {request.strategy!r}; use one of {', '.join(STRATEGIES)}.")
        if request.transport not in TRANSPORTS:
            raise SfduckError(f"Unknown transport {request.transport!r}; use one of {', '.join(TRANSPORTS)}.")
        if request.trigger not in TRIGGERS:
            raise SfduckError(f"Unknown trigger {request.trigger!r}; use one of {', '.join(TRIGGERS)}.")
        schema = self.default_schema(request.schema_name)
        validate_identifier(request.table_name, "table name")
        request = dataclasses.replace(request, schema_name=schema)  # the caller's request stays as given
        reg = self.store.require_active(schema, request.table_name)
        if request.strategy == "incremental" and not (request.incremental_key or reg.incremental_key):
            raise MissingIncrementalKeyError(schema, request.table_name)
        self.store.claim_source(self.settings.source_label)
        safe_filter = None
        if request.where:
            status = self.store.sync_status(schema, request.table_name)
            known = [c["name"] for c in (status or {}).get("columns") or []]
            if not known:
                known = self.describe(schema, request.table_name).column_names
            safe_filter = validate_filter(request.where, known)
        self.recover()
        sync_id = self.store.start_job(reg, request.strategy, request.transport,
                                       safe_filter.sql if safe_filter else None, trigger=request.trigger,
                                       started_by=request.started_by, queued=queued)
        return SyncRun(self, request, reg, sync_id, safe_filter, on_progress)

    def recover(self) -> None:
        """Clean up after processes that died mid-sync (kill -9, a power cut): their jobs are
        settled from the data's commit records (`completed` if their data committed, else
        `failed`), so their tables can be synced again, and their download folders, which only
        fill the disk, are removed. Run when a server starts and before every sync."""
        self.store.reap_dead_jobs()
        downloads = self.settings.data_dir / "tmp"
        if not downloads.is_dir():
            return
        running = {job["sync_id"] for job in self.store.running_jobs()}
        for folder in downloads.iterdir():
            if folder.name.removesuffix("_keys") not in running:
                shutil.rmtree(folder, ignore_errors=True)

    def cancel(self, sync_id: str) -> dict[str, Any]:
        """Ask a running sync (of this or any process) to stop; it ends `cancelled`, table unchanged."""
        return self.store.request_cancel(sync_id)

    def sync(self, request: SyncRequest, on_progress: ProgressCallback = ignore_progress) -> dict[str, Any]:
        return self.prepare(request, on_progress).run()

    def _execute(self, run: SyncRun) -> dict[str, Any]:
        stats = SyncStats(strategy=run.request.strategy, filter=run.safe_filter.sql if run.safe_filter else None)
        run._thread = threading.get_ident()
        run.started = time.monotonic()  # SFDUCK_SYNC_TIMEOUT counts from here, not from a wait in a queue
        try:
            self.store.mark_running(run.sync_id)
            with self.source() as src, waiting_for_data(run.wait_policy()):
                self._sync_with_source(src, run, stats)
            job = self.store.get_job(run.sync_id)
            assert job is not None
            run.report(phase="done", message="Skipped: nothing changed since the last sync"
                       if job["status"] == "skipped" else "Sync completed")
            return job
        except BaseException as exc:
            stats.duration_s = run.elapsed()
            stopped = run.stop_reason() if isinstance(exc, SfduckError | duckdb.Error) else None
            full = (out_of_space(exc, self.settings.data_dir, self.store.path)
                    if not stopped and isinstance(exc, Exception) else None)
            if stopped:  # however it surfaced (our check, an interrupted DuckDB statement)
                exc = SyncCancelledError(stopped)
                message = stopped
            elif full is not None:  # the real cause, whatever error the full disk surfaced as
                exc = full
                message = str(full)
            elif isinstance(exc, SfduckError):
                message = str(exc)
            elif isinstance(exc, KeyboardInterrupt):
                message = "Interrupted; the table was left as it was before the sync."
            else:
                message = f"Internal error ({type(exc).__name__}): {exc}"
            if run.data_committed:  # only the job's record failed: it is settled from the data's commit record
                raise SyncFailedError(f"Sync {run.sync_id} committed its data, but its job could not be recorded "
                                      f"({message}); it is recorded as completed once the metadata database "
                                      "can be written.") from exc
            status = "cancelled" if isinstance(exc, SyncCancelledError) else "failed"
            run.report(phase=status, message=message)
            self.store.fail_job(run.registration, run.sync_id, message, stats.as_dict(), status=status)
            # the sync_id lets automation fetch the failed job (`status SYNC_ID`); same error type
            error_type = type(exc) if isinstance(exc, SfduckError) else SyncFailedError
            raise error_type(f"Sync {run.sync_id} {'was cancelled' if stopped else 'failed'}: {message}") from exc
        finally:
            self.store.finish(run.sync_id)
            if run.data_committed:
                with contextlib.suppress(Exception):  # settles it now if its record was not written
                    self.store.reap_dead_jobs()
            self._announce_end(run.sync_id)

    def restore(self, schema: str, table: str, from_sync_id: str, *, trigger: str = "cli",
                started_by: str | None = None) -> dict[str, Any]:
        """Bring a table back to the version an earlier sync of it committed, as a job of its own.

        Only a lake keeps earlier versions. The copy is made from the snapshot inside one
        transaction with the job's metadata, like a full sync's swap; the watermark goes back to
        the restored sync's, so the next incremental fetches everything changed since that
        version, and the next sync is never skipped (the copy no longer matches the source)."""
        if trigger not in TRIGGERS:
            raise SfduckError(f"Unknown trigger {trigger!r}; use one of {', '.join(TRIGGERS)}.")
        schema = self.default_schema(schema)
        validate_identifier(table, "table name")
        self.store.storage.require("time_travel", "Restoring an earlier version")
        reg = self.store.require_active(schema, table)
        source = self.store.get_job(from_sync_id)
        if source is None or (source["schema_name"], source["table_name"]) != (schema, table):
            raise JobNotFoundError(f"No sync {from_sync_id!r} of {schema}.{table}; pick one from its history.")
        snapshot_id = source["stats"].get("snapshot_id")
        if source["status"] == "skipped":  # its version is the one the sync before it made
            raise SfduckError(f"Sync {from_sync_id} of {schema}.{table} was skipped (nothing had changed), so it "
                              "made no version of its own; restore the completed sync before it.")
        if source["status"] != "completed" or snapshot_id is None:
            raise SfduckError(f"Sync {from_sync_id} of {schema}.{table} left no version to restore: it "
                              f"{'ended ' + source['status'] if source['status'] != 'completed' else 'was expired by retention'}.")
        sync_id = self.store.start_job(reg, RESTORE, "none", None, trigger=trigger, started_by=started_by)
        stats = SyncStats(strategy=RESTORE, restored_from={"sync_id": from_sync_id, "snapshot_id": snapshot_id})
        started = time.monotonic()
        staging = self.store.storage.staging_name(sync_id)
        try:
            with self.store.connect() as con:
                con.execute("BEGIN")
                version, params = self.store.storage.table_at(schema, table, int(snapshot_id))
                con.execute(f"CREATE TABLE {qualified(schema, staging)} AS SELECT * FROM {version}", params)
                self.store.storage.replace_table(con, schema, table, staging)
                rows = self.store.storage.count_rows(con, schema, table)
                stats.rows_processed = stats.rows_inserted = rows
                stats.table_stats = {"local_row_count": rows}
                stats.watermark_after = source["stats"].get("watermark_after")
                stats.duration_s = round(time.monotonic() - started, 3)
                committed = self.store.mark_committed(con, reg, sync_id, stats.as_dict(), "none", row_count=rows,
                                                      watermark=stats.watermark_after, source_row_count=None,
                                                      source_last_modified=None)
                con.execute("COMMIT")
            self.store.complete_job(reg, sync_id, **committed)  # after the data's COMMIT (see mark_committed)
        except BaseException as exc:  # recorded whatever it was; the table stays as it was
            message = (str(exc) if isinstance(exc, SfduckError) else f"DuckDB refused the restore: {exc}"
                       if isinstance(exc, duckdb.Error) else f"Internal error ({type(exc).__name__}): {exc}")
            stats.duration_s = round(time.monotonic() - started, 3)
            self.store.fail_job(reg, sync_id, message, stats.as_dict())
            if not isinstance(exc, Exception):
                raise
            raise SyncFailedError(f"Restore {sync_id} of {schema}.{table} failed: {message}") from exc
        finally:
            self.store.finish(sync_id)
            self._announce_end(sync_id)
        job = self.store.get_job(sync_id)
        assert job is not None
        return job

    def _announce_end(self, sync_id: str) -> None:
        if self.on_job_end is None:
            return
        try:
            job = self.store.get_job(sync_id)
            if job is not None:
                self.on_job_end(job)
        except Exception:  # a listener (a notification) never fails or changes a sync
            _log.exception("listener of the end of sync %s failed", sync_id)

    def _sync_with_source(self, src: SnowflakeSource, run: SyncRun, stats: SyncStats) -> None:
        req, reg = run.request, run.registration
        run.report(phase="describing", message="Reading the table's schema from Snowflake")
        info = src.table_info(req.schema_name, req.table_name)
        desc = _selected_columns(src.describe(req.schema_name, req.table_name, info), reg)
        _refuse_column_collisions(desc.schema_name, desc.table_name, desc.column_names)
        stats.table_stats = {"row_count": info.row_count, "size_bytes": info.size_bytes,
                             "last_modified": info.last_modified}
        stats.total_rows = info.row_count
        stats.unknown_types = [
            {"column": p.name, "snowflake_type": str(p.snowflake_type)} for p in desc.plans if not p.mapping.known
        ]
        run.report(rows_total=info.row_count)
        plan = IncrementalPlan.build(self.store, run, desc, info)
        if plan.skip:
            stats.skipped = True
            stats.watermark_before = stats.watermark_after = plan.watermark_dict
            stats.rows_inserted = stats.rows_updated = stats.rows_deleted = 0
            stats.transfer.transport = "none"
            stats.duration_s = run.elapsed()
            # nothing changes in the data: only the metadata records the skip
            self.store.complete_job(reg, run.sync_id, stats.as_dict(), "none", status="skipped")
            return
        stats.skipped = False
        if plan.key_plan is not None:
            stats.watermark_before = plan.watermark_dict
            stats.incremental_key = plan.key_plan.name
            stats.null_key_rows = src.count_null(desc, plan.key_plan.name)
        where, params = plan.where(run.safe_filter.sql if run.safe_filter else None)
        # What a later sync compares against to skip: the source as it was when the copy was made
        # exact. A merge that may miss deletes (no primary key, or no delete detection) leaves the
        # copy possibly different, so it clears that, and the next sync cannot be skipped.
        exact = not plan.merge or bool(plan.primary_key and plan.detect_deletes)
        status_fields = {"source_row_count": info.row_count if exact else None,
                         "source_last_modified": info.last_modified if exact else None,
                         "columns": column_signature(desc),
                         "filter": run.safe_filter.sql if run.safe_filter else None}

        committed: dict[str, Any] = {}  # what the data's transaction recorded, for the job after its COMMIT

        def finalize(con: duckdb.DuckDBPyConnection, staging: str, transferred: TransferResult) -> None:
            if plan.merge:
                self._merge(con, run, desc, plan, staging, stats)
            else:
                run.report(phase="swapping", message="Replacing the table in one transaction")
                self.store.storage.replace_table(con, desc.schema_name, desc.table_name, staging)
                stats.rows_inserted = self.store.storage.count_rows(con, desc.schema_name, desc.table_name)
                stats.rows_updated = stats.rows_deleted = 0
                if plan.incremental:
                    stats.full_load = True
            local_rows = self.store.storage.count_rows(con, desc.schema_name, desc.table_name)
            stats.rows_processed = local_rows if stats.rows_loaded is None else stats.rows_loaded
            watermark = (read_watermark(con, desc.schema_name, desc.table_name, plan.key_plan)
                         if plan.key_plan is not None else None)
            if plan.key_plan is not None:
                stats.watermark_after = watermark.as_dict() if watermark else plan.watermark_dict
            stats.table_stats["local_row_count"] = local_rows
            stats.duration_s = run.elapsed()
            committed.update(self.store.mark_committed(
                con, reg, run.sync_id, stats.as_dict(), transferred.transport or "none", row_count=local_rows,
                watermark=stats.watermark_after, **status_fields,
            ))

        transfer = Transfer(self.store, self.settings.data_dir, src, desc, req.transport, run.sync_id, run.report,
                            source_bytes=info.size_bytes, should_stop=lambda: run.stop_reason() is not None)
        stats.transfer = transfer.result  # a failed job keeps what the transfer got to record
        extra_dir = self.settings.data_dir / "tmp" / f"{run.sync_id}_keys"

        def prefetch() -> None:
            """After the rows (a row deleted in between is then deleted here too), before the lock."""
            plan.extra = self._prefetch_for_merge(run, desc, plan, extra_dir)

        try:
            transfer.run(where, params, finalize, prefetch=prefetch if plan.merge else None)
        finally:
            shutil.rmtree(extra_dir, ignore_errors=True)
        # The data has committed; the job's record follows. A crash in between is settled from the
        # data's commit record (Store.mark_committed, Store._reap_dead_jobs).
        run.data_committed = True
        self.store.complete_job(reg, run.sync_id, **committed)

    def _merge(self, con: duckdb.DuckDBPyConnection, run: SyncRun, desc: TableDescription,
               plan: IncrementalPlan, staging: str, stats: SyncStats) -> None:
        """Apply a change set in the caller's transaction: drift first, then upsert or append, then
        what the prefetch found (deleted keys, late rows, values of added columns)."""
        schema, table = desc.schema_name, desc.table_name
        extra = plan.extra or MergeExtras()
        run.report(phase="swapping", message="Merging the changes in one transaction")
        drift = apply_drift(self.store.storage, con, schema, table, desc.plans)
        stats.schema_drift = drift.as_dict()
        if extra.fill is not None:
            stats.schema_drift["rows_backfilled"] = self._load_and(
                con, run, "_fill", desc.select([*plan.primary_key, *extra.added]), extra.fill,
                lambda t: backfill(con, schema, table, t, plan.primary_key, extra.added))
        stats.rows_loaded = self.store.storage.count_rows(con, schema, staging)
        columns = [p.name for p in desc.plans]
        if plan.primary_key:
            merged = upsert(self.store.storage, con, schema, table, staging, columns, plan.primary_key, plan.key_plan.name,
                            plan.watermark)
            stats.rows_inserted, stats.rows_updated = merged.rows_inserted, merged.rows_updated
            stats.rows_unchanged = merged.rows_unchanged
            stats.duplicate_keys_in_change_set = merged.duplicate_keys_in_change_set
        else:
            stats.rows_inserted, stats.rows_updated = append(self.store.storage, con, schema, table, staging, columns), 0
        con.execute(f"DROP TABLE {qualified(schema, staging)}")
        stats.rows_deleted = 0
        if extra.keys is not None:
            run.report(phase="swapping", message="Comparing primary keys to find deleted rows")
            stats.rows_deleted = self._load_and(
                con, run, "_keys", desc.select([*plan.primary_key, plan.key_plan.name]), extra.keys,
                lambda t: delete_missing(self.store.storage, con, schema, table, t, plan.primary_key))
        if extra.late is not None:
            stats.late_rows = extra.late_count
            run.report(phase="swapping", message=f"Merging {extra.late_count} row(s) committed below the watermark")
            late = self._load_and(con, run, "_late", desc, extra.late,
                                  lambda t: upsert(self.store.storage, con, schema, table, t, columns, plan.primary_key, plan.key_plan.name))
            stats.rows_inserted = (stats.rows_inserted or 0) + late.rows_inserted
            stats.rows_updated = (stats.rows_updated or 0) + late.rows_updated

    def _load_and(self, con: duckdb.DuckDBPyConnection, run: SyncRun, suffix: str, part: TableDescription,
                  spool: ArrowSpool, apply: Callable[[str], Any]) -> Any:
        """Load a prefetched spool into a scratch table of the transaction, apply it, drop it."""
        scratch = self.store.storage.staging_name(run.sync_id) + suffix
        self.store.storage.create_table(con, part.schema_name, scratch, [(p.name, p.duckdb_type) for p in part.plans])
        load_arrow_spool(con, qualified(part.schema_name, scratch), part, spool)
        result = apply(scratch)
        con.execute(f"DROP TABLE {qualified(part.schema_name, scratch)}")
        return result

    def _prefetch_for_merge(self, run: SyncRun, desc: TableDescription, plan: IncrementalPlan,
                            directory: Path) -> MergeExtras:
        """The reads from Snowflake a merge needs beyond the change set, done before DuckDB's
        write lock is taken (found by the property test in tests/integration/test_incremental_property.py):

        * with delete detection, every (primary key, incremental key) pair: a key gone is a delete;
          a pair below the watermark that the local table lacks is a row committed late (a long
          transaction) or re-stamped older, which no watermark bound selects: those rows are
          fetched from the lowest such key up to the watermark;
        * with a primary key, the values of columns added at the source in the rows already here
          (a column added with a DEFAULT holds it in every existing row, and no key moved).
        """
        extra = MergeExtras()
        if not plan.primary_key:
            return extra
        user_filter = run.safe_filter.sql if run.safe_filter else None
        with self.store.connect() as con:
            local = {name for name, _ in self.store.storage.table_columns(con, desc.schema_name, desc.table_name)}
        extra.added = [p.name for p in desc.plans if p.name not in local]
        with self.source() as src:
            def spool(part: TableDescription, name: str, where: str | None = None,
                      params: list[Any] | None = None) -> ArrowSpool:
                _, batches = src.arrow_result(src.select_sql(part, for_stage=False, where=where), params)
                return spool_arrow_batches(batches, part, directory / name)

            if extra.added:
                run.report(phase="downloading", message="Reading the values of the columns added at the source")
                extra.fill = spool(desc.select([*plan.primary_key, *extra.added]), "fill", user_filter)
            if not plan.detect_deletes:
                return extra
            run.report(phase="downloading", message="Reading the primary keys to find deleted and late rows")
            pairs = desc.select([*plan.primary_key, plan.key_plan.name])
            extra.keys = spool(pairs, "keys", user_filter)
            extra.late_count, lowest = self._late_rows(run, pairs, plan, extra.keys)
            if lowest is None:
                return extra
            key = quote_ident(plan.key_plan.name)
            bound = (f"{key} >= {lowest.snowflake_literal_sql()} AND {key} < {plan.watermark.snowflake_literal_sql()}")
            where = f"({user_filter}) AND {bound}" if user_filter else bound
            extra.late = spool(desc, "late", where, [lowest.value, plan.watermark.value])
        return extra

    def _late_rows(self, run: SyncRun, pairs: TableDescription, plan: IncrementalPlan,
                   keys: ArrowSpool) -> tuple[int, Watermark | None]:
        """Source pairs below the watermark the local table lacks (rows at or above it, or with a
        NULL key, come with the change set). Read in a transaction that is rolled back: it leaves
        nothing behind and holds the lock only for this local comparison."""
        scratch = self.store.storage.staging_name(run.sync_id) + "_pairs"
        with self.store.connect() as con:
            con.execute("BEGIN")
            try:
                self.store.storage.create_table(con, pairs.schema_name, scratch, [(p.name, p.duckdb_type) for p in pairs.plans])
                load_arrow_spool(con, qualified(pairs.schema_name, scratch), pairs, keys)
                key = quote_ident(plan.key_plan.name)
                con.execute(f"DELETE FROM {qualified(pairs.schema_name, scratch)} WHERE {key} IS NULL OR "
                            f"{key} >= CAST(? AS {plan.watermark.duckdb_type})", [plan.watermark.value])
                return stale_rows(con, pairs.schema_name, pairs.table_name, scratch, plan.primary_key, plan.key_plan)
            finally:
                con.execute("ROLLBACK")


@dataclass
class MergeExtras:
    """What `_prefetch_for_merge` read from Snowflake for the merge, spooled locally."""

    keys: ArrowSpool | None = None  # (primary key, incremental key) of every source row
    late: ArrowSpool | None = None  # rows committed below the watermark
    late_count: int = 0
    added: list[str] = field(default_factory=list)
    fill: ArrowSpool | None = None  # primary key + added columns of every source row


@dataclass
class IncrementalPlan:
    """What an incremental run will do, decided before any data moves."""

    incremental: bool
    merge: bool = False
    skip: bool = False
    key_plan: ColumnPlan | None = None
    watermark: Watermark | None = None
    primary_key: tuple[str, ...] = ()
    detect_deletes: bool = False
    extra: MergeExtras | None = None  # filled by the prefetch, before the merge's transaction

    @property
    def watermark_dict(self) -> dict[str, str] | None:
        return self.watermark.as_dict() if self.watermark else None

    @classmethod
    def build(cls, store: Store, run: SyncRun, desc: TableDescription, info: TableInfo) -> IncrementalPlan:
        req, reg = run.request, run.registration
        key_name = req.incremental_key or reg.incremental_key
        key_plan = None
        if key_name:
            key_plan = next((p for p in desc.plans if p.name == key_name), None)
            if key_plan is None:
                raise SfduckError(
                    f"Incremental key {key_name!r} is not a column of {desc.schema_name}.{desc.table_name}; "
                    f"its columns are: {', '.join(desc.column_names)}.{did_you_mean(key_name, desc.column_names)}"
                )
        status = store.sync_status(desc.schema_name, desc.table_name) or {}
        with store.connect() as con:
            table_exists = store.storage.table_exists(con, desc.schema_name, desc.table_name)
        previous = [j for j in store.history(desc.schema_name, desc.table_name, limit=2) if j["sync_id"] != run.sync_id]
        last_attempt_ok = bool(previous) and previous[0]["status"] in SUCCESS_STATUSES
        unchanged = (table_exists and last_attempt_ok and not req.force
                     and _unchanged_since_last_success(status, info, desc, run))
        if req.strategy != "incremental":
            return cls(incremental=False, skip=unchanged, key_plan=key_plan)
        if key_plan is None:
            raise MissingIncrementalKeyError(desc.schema_name, desc.table_name)
        primary_key = tuple(req.primary_key or reg.primary_key or desc.primary_key)
        missing = [k for k in primary_key if k not in desc.column_names]
        if missing:
            raise SfduckError(f"Primary-key column(s) {', '.join(missing)} not in the synced columns.")
        detect_deletes = bool(reg.detect_deletes if req.detect_deletes is None else req.detect_deletes)
        if detect_deletes and not primary_key:
            raise SfduckError("Detecting deletes needs a primary key.", remedy="primary_key",
                              schema=desc.schema_name, table=desc.table_name)
        watermark = Watermark.from_dict(status.get("watermark"))
        if watermark is not None and watermark.column != key_plan.name:
            watermark = None  # the key changed: start over with a full load
        if watermark is None or not table_exists:
            return cls(incremental=True, key_plan=key_plan, primary_key=primary_key)
        return cls(incremental=True, merge=True, skip=unchanged, key_plan=key_plan, watermark=watermark,
                   primary_key=primary_key, detect_deletes=detect_deletes)

    def where(self, user_filter: str | None) -> tuple[str | None, list[Any] | None]:
        """The transfer's WHERE: the user's filter and, when merging, the watermark bound.

        With a primary key the bound is inclusive (>=): a row committed late with a key equal to the
        watermark is fetched again and the upsert makes that harmless. Without one it must be
        exclusive (>), or every run would duplicate the rows at the watermark.
        """
        if not self.merge or self.watermark is None or self.key_plan is None:
            return user_filter, None
        key = quote_ident(self.key_plan.name)
        if self.primary_key:  # NULL keys too: such a row can change without its key ever moving
            bound = f"({key} >= {self.watermark.snowflake_literal_sql()} OR {key} IS NULL)"
        else:
            bound = f"{key} > {self.watermark.snowflake_literal_sql()}"
        where = f"({user_filter}) AND {bound}" if user_filter else bound
        return where, [self.watermark.value]


def column_signature(desc: TableDescription) -> list[dict[str, str]]:
    """What a synced table's shape is recorded as; a change means the data must move again."""
    return [{"name": p.name, "snowflake_type": str(p.snowflake_type), "duckdb_type": p.duckdb_type}
            for p in desc.plans]


def _unchanged_since_last_success(status: dict[str, Any], info: TableInfo, desc: TableDescription,
                                  run: SyncRun) -> bool:
    """Snowflake's LAST_ALTERED moves on any DML, so equal values (with the same row count, filter
    and columns) as when the copy was last made exact mean it still is, and the warehouse need not
    be woken. A sync that could leave it inexact recorded no such values (see `status_fields`)."""
    if (status.get("last_success_at") is None or info.last_modified is None
            or status.get("source_last_modified") is None):
        return False
    if "VIEW" in str(info.table_type or "").upper():  # a view's LAST_ALTERED is its DDL, not its data
        return False
    return (
        _same_instant(status["source_last_modified"], info.last_modified)
        and status.get("source_row_count") == info.row_count
        and status.get("filter") == (run.safe_filter.sql if run.safe_filter else None)
        and status.get("columns") == column_signature(desc)
    )


def _same_instant(stored: Any, current: dt.datetime) -> bool:
    stored_dt = dt.datetime.fromisoformat(stored) if isinstance(stored, str) else stored
    if stored_dt.tzinfo is None:
        stored_dt = stored_dt.replace(tzinfo=dt.UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=dt.UTC)
    return stored_dt == current


def _selected_columns(desc: TableDescription, reg: Registration) -> TableDescription:
    if reg.include_columns:
        return desc.select(reg.include_columns)
    if reg.exclude_columns:
        return desc.select([c for c in desc.column_names if c not in set(reg.exclude_columns)])
    return desc


def _refuse_column_collisions(schema: str, table: str, columns: Sequence[str]) -> None:
    clashes = case_collisions(columns)
    if clashes:
        listed = "; ".join(" and ".join(repr(c) for c in group) for group in clashes)
        raise NameCollisionError(
            f"{schema}.{table} has columns that differ only in case ({listed}); DuckDB column names ignore "
            "case, so the table cannot be created. Nothing was changed.", remedy="exclude_columns",
            schema=schema, table=table)
