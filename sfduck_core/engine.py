"""The sync engine: one Snowflake table into one DuckDB table, never leaving it half-written.

Every sync loads into a staging table inside one DuckDB transaction and swaps it in (full) or
merges it by key (incremental) before committing, together with the job's metadata. A crash at
any moment therefore rolls back to the previous version of the table. The transfer itself happens
over one of two transports: `stage` (the spec's COPY INTO a temporary stage as Parquet, GET, then
`read_parquet`) or `arrow` (the connector's Arrow result batches streamed straight in).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from sfduck_core.config import Settings, SnowflakeSettings, resolve_snowflake
from sfduck_core.errors import SfduckError, SyncFailedError, TableNotFoundError
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
from sfduck_core.progress import ProgressCallback, SyncProgress, ignore_progress
from sfduck_core.source import SnowflakeSource, TableDescription, TableInfo
from sfduck_core.sqlident import qualified, quote_ident, validate_identifier
from sfduck_core.store import Registration, Store
from sfduck_core.transfer import Transfer, load_arrow_batches
from sfduck_core.typemap import ColumnPlan

TRANSPORTS = ("auto", "stage", "arrow")
STRATEGIES = ("full", "incremental")


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

    def __post_init__(self) -> None:
        self.progress = SyncProgress(self.sync_id, self.request.schema_name, self.request.table_name)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def report(self, **changes: Any) -> None:
        self.progress = self.progress.advance(**changes)
        self.on_progress(self.progress)

    def run(self) -> dict[str, Any]:
        return self.engine._execute(self)


class SyncEngine:
    """The one entry point front ends use; it owns settings, the store and the source sessions."""

    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self.store = store or Store(settings.duckdb_path, settings.lock_timeout_s, settings.duckdb_memory_limit)
        self._snowflake: SnowflakeSettings | None = None
        self._lock = threading.Lock()

    # --- Snowflake side --------------------------------------------------------------------

    @property
    def snowflake(self) -> SnowflakeSettings:
        with self._lock:
            if self._snowflake is None:
                self._snowflake = resolve_snowflake(self.settings)
            return self._snowflake

    def source(self) -> SnowflakeSource:
        return SnowflakeSource(self.snowflake)

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
                 include_columns: Sequence[str] = (), exclude_columns: Sequence[str] = ()) -> Registration:
        """Verify the table exists in Snowflake, check the chosen columns, then record it."""
        desc = self.describe(schema, table)
        names = desc.column_names
        key = tuple(primary_key) if primary_key else desc.primary_key
        for label, cols in (("primary key", key), ("incremental key", [incremental_key] if incremental_key else []),
                            ("column", include_columns), ("excluded column", exclude_columns)):
            unknown = [c for c in cols if c not in names]
            if unknown:
                raise TableNotFoundError(
                    f"Unknown {label} {', '.join(map(repr, unknown))} for {schema}.{table}; "
                    f"its columns are: {', '.join(names)}."
                )
        if include_columns and exclude_columns:
            raise SfduckError("Give either the columns to keep or the columns to exclude, not both.")
        protected = set(key) | ({incremental_key} if incremental_key else set())
        dropped = protected & set(exclude_columns) if exclude_columns else protected - set(include_columns or names)
        if dropped:
            raise SfduckError(
                f"Primary-key and incremental-key columns cannot be left out: {', '.join(sorted(dropped))}."
            )
        return self.store.upsert_registration(
            desc.schema_name, desc.table_name, incremental_key=incremental_key, primary_key=key,
            detect_deletes=detect_deletes, include_columns=include_columns, exclude_columns=exclude_columns,
        )

    def unregister(self, schema: str, table: str) -> Registration:
        """Mark inactive; history and synced data stay for auditing."""
        return self.store.deactivate(self.default_schema(schema), validate_identifier(table, "table name"))

    # --- syncing ---------------------------------------------------------------------------

    def prepare(self, request: SyncRequest, on_progress: ProgressCallback = ignore_progress) -> SyncRun:
        """Validate everything that can be validated locally, then create the job.

        Bad input fails here, before Snowflake is contacted and before anything is written.
        """
        if request.strategy not in STRATEGIES:
            raise SfduckError(f"Unknown strategy {request.strategy!r}; use one of {', '.join(STRATEGIES)}.")
        if request.transport not in TRANSPORTS:
            raise SfduckError(f"Unknown transport {request.transport!r}; use one of {', '.join(TRANSPORTS)}.")
        schema = self.default_schema(request.schema_name)
        validate_identifier(request.table_name, "table name")
        request.schema_name = schema
        reg = self.store.require_active(schema, request.table_name)
        safe_filter = None
        if request.where:
            status = self.store.sync_status(schema, request.table_name)
            known = [c["name"] for c in (status or {}).get("columns") or []]
            if not known:
                known = self.describe(schema, request.table_name).column_names
            safe_filter = validate_filter(request.where, known)
        sync_id = self.store.start_job(reg, request.strategy, request.transport,
                                       safe_filter.sql if safe_filter else None)
        return SyncRun(self, request, reg, sync_id, safe_filter, on_progress)

    def sync(self, request: SyncRequest, on_progress: ProgressCallback = ignore_progress) -> dict[str, Any]:
        return self.prepare(request, on_progress).run()

    def _execute(self, run: SyncRun) -> dict[str, Any]:
        stats: dict[str, Any] = {"strategy": run.request.strategy, "rows_processed": 0, "total_rows": 0,
                                 "filter": run.safe_filter.sql if run.safe_filter else None}
        try:
            with self.source() as src:
                self._sync_with_source(src, run, stats)
            run.report(phase="done", message="Sync completed")
            job = self.store.get_job(run.sync_id)
            assert job is not None
            return job
        except BaseException as exc:
            stats["duration_s"] = run.elapsed()
            if isinstance(exc, SfduckError):
                message = str(exc)
            elif isinstance(exc, KeyboardInterrupt):
                message = "Interrupted; the table was left as it was before the sync."
            else:
                message = f"Internal error ({type(exc).__name__}): {exc}"
            run.report(phase="failed", message=message)
            self.store.fail_job(run.registration, run.sync_id, message, stats)
            # the sync_id lets automation fetch the failed job (`status SYNC_ID`); same error type
            error_type = type(exc) if isinstance(exc, SfduckError) else SyncFailedError
            raise error_type(f"Sync {run.sync_id} failed: {message}") from exc
        finally:
            self.store.finish(run.sync_id)

    def _sync_with_source(self, src: SnowflakeSource, run: SyncRun, stats: dict[str, Any]) -> None:
        req, reg = run.request, run.registration
        run.report(phase="describing", message="Reading the table's schema from Snowflake")
        info = src.table_info(req.schema_name, req.table_name)
        desc = _selected_columns(src.describe(req.schema_name, req.table_name, info), reg)
        stats["table_stats"] = {"row_count": info.row_count, "size_bytes": info.size_bytes,
                                "last_modified": info.last_modified}
        stats["total_rows"] = info.row_count
        stats["unknown_types"] = [
            {"column": p.name, "snowflake_type": str(p.snowflake_type)} for p in desc.plans if not p.mapping.known
        ]
        run.report(rows_total=info.row_count)
        plan = IncrementalPlan.build(self.store, run, desc, info)
        if plan.skip:
            stats.update(skipped=True, watermark_before=plan.watermark_dict, watermark_after=plan.watermark_dict,
                         rows_inserted=0, rows_updated=0, rows_deleted=0, transport="none", duration_s=run.elapsed())
            with self.store.connect() as con:
                self.store.complete_job(con, reg, run.sync_id, stats, "none")
            return
        stats["skipped"] = False
        if plan.key_plan is not None:
            stats["watermark_before"] = plan.watermark_dict
            stats["incremental_key"] = plan.key_plan.name
            stats["null_key_rows"] = src.count_null(desc, plan.key_plan.name)
        where, params = plan.where(run.safe_filter.sql if run.safe_filter else None)
        status_fields = {"source_row_count": info.row_count, "source_last_modified": info.last_modified,
                         "columns": column_signature(desc),
                         "filter": run.safe_filter.sql if run.safe_filter else None}

        def finalize(con: duckdb.DuckDBPyConnection, staging: str) -> None:
            if plan.merge:
                self._merge(con, run, desc, plan, staging, stats)
            else:
                run.report(phase="swapping", message="Replacing the table in one transaction")
                Store.replace_table(con, desc.schema_name, desc.table_name, staging)
                stats["rows_inserted"] = Store.count_rows(con, desc.schema_name, desc.table_name)
                stats.update(rows_updated=0, rows_deleted=0)
                if plan.incremental:
                    stats["full_load"] = True
            local_rows = Store.count_rows(con, desc.schema_name, desc.table_name)
            stats["rows_processed"] = stats.get("rows_loaded", local_rows)
            watermark = (read_watermark(con, desc.schema_name, desc.table_name, plan.key_plan)
                         if plan.key_plan is not None else None)
            if plan.key_plan is not None:
                stats["watermark_after"] = watermark.as_dict() if watermark else plan.watermark_dict
            stats["table_stats"]["local_row_count"] = local_rows
            stats["duration_s"] = run.elapsed()
            self.store.complete_job(
                con, reg, run.sync_id, stats, stats["transport"], row_count=local_rows,
                watermark=stats.get("watermark_after"), **status_fields,
            )

        Transfer(self, src, run, desc, stats).run(where, params, finalize)

    def _merge(self, con: duckdb.DuckDBPyConnection, run: SyncRun, desc: TableDescription,
               plan: IncrementalPlan, staging: str, stats: dict[str, Any]) -> None:
        """Apply a change set in the caller's transaction: drift first, then upsert or append."""
        schema, table = desc.schema_name, desc.table_name
        run.report(phase="swapping", message="Merging the changes in one transaction")
        drift = apply_drift(con, schema, table, desc.plans)
        stats["schema_drift"] = drift.as_dict()
        if drift.added and plan.primary_key:
            stats["schema_drift"]["rows_backfilled"] = self._backfill(con, run, desc, plan, drift.added)
        stats["rows_loaded"] = Store.count_rows(con, schema, staging)
        columns = [p.name for p in desc.plans]
        if plan.primary_key:
            merged = upsert(con, schema, table, staging, columns, plan.primary_key, plan.key_plan.name,
                            plan.watermark)
            stats.update(rows_inserted=merged.rows_inserted, rows_updated=merged.rows_updated,
                         rows_unchanged=merged.rows_unchanged,
                         duplicate_keys_in_change_set=merged.duplicate_keys_in_change_set)
        else:
            stats.update(rows_inserted=append(con, schema, table, staging, columns), rows_updated=0)
        con.execute(f"DROP TABLE {qualified(schema, staging)}")
        stats["rows_deleted"] = 0
        if plan.detect_deletes:
            run.report(phase="swapping", message="Comparing primary keys to find deleted rows")
            stats["rows_deleted"] = self._delete_missing(con, run, desc, plan, stats)

    def _backfill(self, con: duckdb.DuckDBPyConnection, run: SyncRun, desc: TableDescription,
                  plan: IncrementalPlan, added: Sequence[str]) -> int:
        """Fill columns just added locally with their source values in the rows already there.

        A column added at the source with a DEFAULT holds it in every existing row, yet no row's
        incremental key moved, so no bound re-fetches them: the primary key and the new columns are
        streamed once and written into the local rows.
        """
        schema, table = desc.schema_name, desc.table_name
        fill_desc = desc.select([*plan.primary_key, *added])
        fill_table = Store.staging_name(run.sync_id) + "_fill"
        Store.create_table(con, schema, fill_table, [(p.name, p.duckdb_type) for p in fill_desc.plans])
        with self.source() as fill_src:
            where = run.safe_filter.sql if run.safe_filter else None
            _, batches = fill_src.arrow_result(fill_src.select_sql(fill_desc, for_stage=False, where=where))
            load_arrow_batches(con, qualified(schema, fill_table), fill_desc, batches)
        filled = backfill(con, schema, table, fill_table, plan.primary_key, added)
        con.execute(f"DROP TABLE {qualified(schema, fill_table)}")
        return filled

    def _delete_missing(self, con: duckdb.DuckDBPyConnection, run: SyncRun, desc: TableDescription,
                        plan: IncrementalPlan, stats: dict[str, Any]) -> int:
        """Delete local rows whose primary key is gone at the source, then catch up on late rows.

        The source's (primary key, incremental key) pairs are streamed: a primary key gone is a
        delete; a pair the local table lacks is a row committed after an earlier sync but stamped
        below its watermark (a long transaction), which no watermark bound selects. Those rows are
        fetched again from the lowest such key up and upserted, so a table with a primary key and
        delete detection is exact whatever the commit order.
        """
        schema, table = desc.schema_name, desc.table_name
        key_desc = desc.select([*plan.primary_key, plan.key_plan.name])
        keys_table = Store.staging_name(run.sync_id) + "_keys"
        Store.create_table(con, schema, keys_table, [(p.name, p.duckdb_type) for p in key_desc.plans])
        user_filter = run.safe_filter.sql if run.safe_filter else None
        with self.source() as key_src:
            _, batches = key_src.arrow_result(key_src.select_sql(key_desc, for_stage=False, where=user_filter))
            load_arrow_batches(con, qualified(schema, keys_table), key_desc, batches)
            deleted = delete_missing(con, schema, table, keys_table, plan.primary_key)
            late, lowest = stale_rows(con, schema, table, keys_table, plan.primary_key, plan.key_plan)
            con.execute(f"DROP TABLE {qualified(schema, keys_table)}")
            stats["late_rows"] = late
            if lowest is None:
                return deleted
            run.report(phase="swapping", message=f"Fetching {late} row(s) committed below the watermark")
            bound = f"{quote_ident(plan.key_plan.name)} >= {lowest.snowflake_literal_sql()}"
            where = f"({user_filter.replace('%', '%%')}) AND {bound}" if user_filter else bound
            late_table = Store.staging_name(run.sync_id) + "_late"
            Store.create_table(con, schema, late_table, [(p.name, p.duckdb_type) for p in desc.plans])
            _, batches = key_src.arrow_result(key_src.select_sql(desc, for_stage=False, where=where), [lowest.value])
            load_arrow_batches(con, qualified(schema, late_table), desc, batches)
        merged = upsert(con, schema, table, late_table, [p.name for p in desc.plans], plan.primary_key,
                        plan.key_plan.name)
        con.execute(f"DROP TABLE {qualified(schema, late_table)}")
        stats["rows_inserted"] += merged.rows_inserted
        stats["rows_updated"] += max(0, late - merged.rows_inserted)
        return deleted


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
                    f"its columns are: {', '.join(desc.column_names)}."
                )
        status = store.sync_status(desc.schema_name, desc.table_name) or {}
        with store.connect() as con:
            table_exists = Store.table_exists(con, desc.schema_name, desc.table_name)
        previous = [j for j in store.history(desc.schema_name, desc.table_name, limit=2) if j["sync_id"] != run.sync_id]
        last_attempt_ok = bool(previous) and previous[0]["status"] == "completed"
        unchanged = (table_exists and last_attempt_ok and not req.force
                     and _unchanged_since_last_success(status, info, desc, run))
        if req.strategy != "incremental":
            return cls(incremental=False, skip=unchanged, key_plan=key_plan)
        if key_plan is None:
            raise SfduckError(
                "An incremental sync needs an incremental key: register the table with --incremental-key "
                "or pass --incremental-key."
            )
        primary_key = tuple(req.primary_key or reg.primary_key or desc.primary_key)
        missing = [k for k in primary_key if k not in desc.column_names]
        if missing:
            raise SfduckError(f"Primary-key column(s) {', '.join(missing)} not in the synced columns.")
        detect_deletes = bool(reg.detect_deletes if req.detect_deletes is None else req.detect_deletes)
        if detect_deletes and not primary_key:
            raise SfduckError("Detecting deletes needs a primary key; register one with --primary-key.")
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
        watermark is fetched again and the upsert makes that harmless. Rows whose key is NULL no bound
        selects, so with a primary key they are fetched again every run (new ones, and rows updated to
        a NULL key, would otherwise never arrive). Without a primary key the bound must be exclusive
        (>) and NULL keys are left out, or every run would duplicate those rows.
        """
        if not self.merge or self.watermark is None or self.key_plan is None:
            return user_filter, None
        key = quote_ident(self.key_plan.name)
        if self.primary_key:
            bound = f"({key} >= {self.watermark.snowflake_literal_sql()} OR {key} IS NULL)"
        else:
            bound = f"{key} > {self.watermark.snowflake_literal_sql()}"
        # with parameters the connector formats the text with %, so the filter's own % are doubled
        where = f"({user_filter.replace('%', '%%')}) AND {bound}" if user_filter else bound
        return where, [self.watermark.value]


def column_signature(desc: TableDescription) -> list[dict[str, str]]:
    """What a synced table's shape is recorded as; a change means the data must move again."""
    return [{"name": p.name, "snowflake_type": str(p.snowflake_type), "duckdb_type": p.duckdb_type}
            for p in desc.plans]


def _unchanged_since_last_success(status: dict[str, Any], info: TableInfo, desc: TableDescription,
                                  run: SyncRun) -> bool:
    """Snowflake's LAST_ALTERED moves on any DML, so equal values (with the same row count, filter
    and columns) mean the local copy is still exact and the warehouse need not be woken."""
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
