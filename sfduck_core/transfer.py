"""Moving the rows of one query from Snowflake into a fresh DuckDB staging table.

Two transports share one contract: the staging table is created and filled inside a DuckDB
transaction, its row count is checked against what Snowflake says it sent, and a finalizer (swap
for full syncs, merge for incremental ones) runs before the commit. Any failure rolls it all back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sfduck_core.errors import SourceError, StoreBusyError, SyncFailedError
from sfduck_core.files import private_dir
from sfduck_core.humanize import human_bytes
from sfduck_core.source import SnowflakeSource, TableDescription
from sfduck_core.sqlident import qualified
from sfduck_core.store import Store

ARROW_BATCH_ROWS = 122_880  # DuckDB's row-group size: larger batches leave under-filled row groups
Report = Callable[..., None]  # keyword changes of a SyncProgress (phase, rows_done, ...)


@dataclass
class TransferResult:
    """What the transfer did, recorded in the job's stats (None: not this run's business)."""

    transport: str | None = None
    fallback_reason: str | None = None
    stage: str | None = None
    stage_dropped: bool | None = None
    rows_unloaded: int | None = None
    files: int | None = None
    bytes_transferred: int | None = None
    unload_s: float | None = None
    query_s: float | None = None
    download_s: float | None = None
    load_s: float | None = None
    local_files_deleted: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


Finalizer = Callable[[duckdb.DuckDBPyConnection, str, TransferResult], None]
STAGE_UNAVAILABLE = "stage unavailable"
UNLOAD_REFUSED = "unload refused"


def arrow_instead(transport: str, step: str, exc: SourceError) -> str:
    """`auto`'s one rule, shared by syncs and by `doctor`'s prediction: when Snowflake refuses a
    stage step (`STAGE_UNAVAILABLE`, `UNLOAD_REFUSED`), use arrow and say why. An outage is no
    reason to switch (the arrow query would meet it too), and `stage` means stage or nothing:
    both re-raise `exc`."""
    if transport != "auto" or not exc.refused:
        raise exc
    return f"{step}, used arrow: {exc}"
Prefetch = Callable[[], None]  # more network work to do after the download, before the lock


class Transfer:
    """Moves the rows selected by one query into a fresh staging table, then hands over to a
    finalizer (swap or merge) inside the same transaction."""

    def __init__(self, store: Store, data_dir: Path, src: SnowflakeSource, desc: TableDescription,
                 transport: str, job_id: str, report: Report, source_bytes: int | None = None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.store, self.src, self.desc, self.transport, self.report = store, src, desc, transport, report
        self.staging = self.store.storage.staging_name(job_id)
        self.data_dir = data_dir
        self.local_dir = data_dir / "tmp" / job_id
        self.source_bytes = source_bytes
        self.should_stop = should_stop
        self.result = TransferResult()

    def run(self, where: str | None, params: Sequence[Any] | None, finalize: Finalizer,
            prefetch: Prefetch | None = None) -> TransferResult:
        """Move the rows, then finalize; `prefetch` runs once the rows are local and before DuckDB's
        write lock is taken, for other reads from Snowflake the finalizer needs (deleted keys)."""
        self.prefetch = prefetch or (lambda: None)
        check_free_space(self.source_bytes, self.data_dir, self.store.path)
        try:
            return self._run(where, params, finalize)
        except Exception as exc:
            if is_disk_full(exc):
                raise disk_full(exc, self.data_dir, self.store.path) from None
            raise

    def _run(self, where: str | None, params: Sequence[Any] | None, finalize: Finalizer) -> TransferResult:
        if self.transport in ("auto", "stage"):
            try:
                stage = self.src.create_temp_stage(self.desc.schema_name)
            except SourceError as exc:
                self.result.fallback_reason = arrow_instead(self.transport, STAGE_UNAVAILABLE, exc)
            else:
                self.result.stage = stage
                try:
                    self._via_stage(stage, where, params, finalize)
                    return self.result
                except _StageRefused as exc:
                    self.result.fallback_reason = arrow_instead(self.transport, UNLOAD_REFUSED, exc.cause)
                finally:
                    if not self.result.stage_dropped:
                        self._drop_stage(stage)
        self._via_arrow(where, params, finalize)
        return self.result

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Load and finalize in one DuckDB transaction. After a failed COMMIT (a full disk, say)
        there is no transaction left to roll back; that error must not replace the cause."""
        self.store.storage.ensure_schema(self.desc.schema_name)
        with self.store.connect() as con:
            con.execute("BEGIN")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

    def _drop_stage(self, stage: str) -> None:
        try:
            self.src.drop_stage(stage)
            self.result.stage_dropped = True
        except SourceError:
            self.result.stage_dropped = False  # temporary: Snowflake drops it with the session

    def _create_staging(self, con: duckdb.DuckDBPyConnection) -> None:
        self.store.storage.create_table(con, self.desc.schema_name, self.staging,
                           [(p.name, p.duckdb_type) for p in self.desc.plans])

    def _check_count(self, con: duckdb.DuckDBPyConnection, expected: int) -> int:
        got = self.store.storage.count_rows(con, self.desc.schema_name, self.staging)
        if got != expected:
            raise SyncFailedError(
                f"Row count mismatch: Snowflake sent {expected} rows but {got} arrived; the table was not changed."
            )
        return got

    def _via_stage(self, stage: str, where: str | None, params: Sequence[Any] | None, finalize: Finalizer) -> None:
        report, result = self.report, self.result
        result.transport = "stage"
        prefix = f"data_{uuid.uuid4().hex}"
        select_sql = self.src.select_sql(self.desc, for_stage=True, where=where)
        report(phase="unloading", message="Snowflake is unloading the table to Parquet")
        t0 = time.monotonic()
        try:
            unloaded = self.src.unload(stage, prefix, select_sql, params=params)
        except SourceError as exc:
            if not exc.refused:
                raise
            raise _StageRefused(exc) from None
        result.unload_s = round(time.monotonic() - t0, 3)
        result.rows_unloaded = unloaded.rows_unloaded
        result.bytes_transferred = unloaded.output_bytes
        local_dir = self.local_dir
        files: list[str] = []
        try:
            if unloaded.rows_unloaded > 0:  # zero rows write no file, and GET would fail
                t0 = time.monotonic()
                listing = self.src.list_stage(stage, prefix)
                report(phase="downloading", files_total=len(listing), files_done=0,
                       message=f"Downloading {len(listing)} file(s)")
                with watch_downloads(local_dir, [name for name, _ in listing], report):
                    received = self.src.download(stage, prefix, local_dir)
                report(files_done=len(listing), bytes_done=received, message=f"Downloaded {len(listing)} file(s)")
                files = sorted(str(p) for p in local_dir.glob("*.parquet"))
                result.files = len(files)
                result.bytes_transferred = received
                result.download_s = round(time.monotonic() - t0, 3)
            self._drop_stage(stage)  # the files are local now: free the stage before the load
            self.prefetch()
            t0 = time.monotonic()
            report(phase="loading", rows_total=unloaded.rows_unloaded, rows_done=0, message="Loading into DuckDB")
            with self._transaction() as con:
                self._create_staging(con)
                load_parquet_files(
                    con, qualified(self.desc.schema_name, self.staging), self.desc, files,
                    on_fraction=lambda f: report(rows_done=int(f * unloaded.rows_unloaded)),
                    should_stop=self.should_stop,
                )
                loaded = self._check_count(con, unloaded.rows_unloaded)
                report(rows_done=loaded)
                result.load_s = round(time.monotonic() - t0, 3)
                shutil.rmtree(local_dir, ignore_errors=True)  # loaded: the job records that they are gone
                result.local_files_deleted = not local_dir.exists()
                finalize(con, self.staging, result)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)

    def _via_arrow(self, where: str | None, params: Sequence[Any] | None, finalize: Finalizer) -> None:
        report, result = self.report, self.result
        result.transport = "arrow"
        select_sql = self.src.select_sql(self.desc, for_stage=False, where=where)
        report(phase="unloading", message="Snowflake is running the query")
        t0 = time.monotonic()
        expected, batches = self.src.arrow_result(select_sql, params)
        result.query_s = round(time.monotonic() - t0, 3)
        local_dir = self.local_dir
        try:
            t0 = time.monotonic()
            report(phase="downloading", rows_total=expected, rows_done=0,
                   message="Receiving Arrow batches into local Parquet files")
            spool = spool_arrow_batches(batches, self.desc, local_dir,
                                        on_batch=lambda rows, nbytes: report(rows_done=rows, bytes_done=nbytes))
            result.bytes_transferred = spool.bytes_received
            result.files = sum(len(files) for files in spool.segments)
            result.download_s = round(time.monotonic() - t0, 3)
            self.prefetch()
            t0 = time.monotonic()
            report(phase="loading", rows_total=expected, rows_done=0, message="Loading into DuckDB")
            with self._transaction() as con:
                self._create_staging(con)
                load_arrow_spool(con, qualified(self.desc.schema_name, self.staging), self.desc, spool,
                                 on_fraction=lambda f: report(rows_done=int(f * expected)),
                                 should_stop=self.should_stop)
                loaded = self._check_count(con, expected)
                result.load_s = round(time.monotonic() - t0, 3)
                report(rows_done=loaded)
                shutil.rmtree(local_dir, ignore_errors=True)  # loaded: the job records that they are gone
                result.local_files_deleted = not local_dir.exists()
                finalize(con, self.staging, result)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)


SPACE_MARGIN = 1.5  # Parquet and DuckDB's own format are about as compact as Snowflake's storage


def existing_parent(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path


def check_free_space(source_bytes: int | None, data_dir: Path, duckdb_path: Path) -> None:
    """Refuse before anything moves when the download and the new DuckDB copy cannot fit."""
    if not source_bytes:
        return
    needs: dict[int, tuple[Path, float]] = {}
    for place in (existing_parent(data_dir), existing_parent(duckdb_path.parent)):
        device = place.stat().st_dev
        folder, need = needs.get(device, (place, 0.0))
        needs[device] = (folder, need + source_bytes * SPACE_MARGIN)
    for folder, need in needs.values():
        free = shutil.disk_usage(folder).free
        if free < need:
            raise SyncFailedError(
                f"Not enough free disk space for this sync: it needs about {human_bytes(need)} (the table is "
                f"{human_bytes(source_bytes)} in Snowflake; its download and its new DuckDB copy) but only "
                f"{human_bytes(free)} is free at {folder}. Free some space, or point SFDUCK_DATA_DIR / "
                "SFDUCK_DUCKDB_PATH at a larger disk. Nothing was changed."
            )


DISK_FULL_MESSAGE = "No space left on the device holding"
NEARLY_FULL_BYTES = 1 << 20  # a disk with less free is what made a write fail, whatever the error said
_DISK_FULL_TEXTS = ("no space left on device", "database or disk is full")


def is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or any(t in str(exc).lower() for t in _DISK_FULL_TEXTS)


def _free_space(data_dir: Path, storage_path: Path) -> dict[str, int]:
    return {str(existing_parent(p)): shutil.disk_usage(existing_parent(p)).free
            for p in (data_dir, storage_path.parent)}


def disk_full(exc: BaseException, data_dir: Path, storage_path: Path) -> SyncFailedError:
    places = _free_space(data_dir, storage_path)
    fullest = min(places, key=lambda p: places[p])
    free = ", ".join(f"{human_bytes(n)} free at {p}" for p, n in places.items())
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SyncFailedError(f"{DISK_FULL_MESSAGE} {fullest} ({first_line}); now {free}. The table was not "
                           "changed; free some space and sync again.")


def out_of_space(exc: BaseException, data_dir: Path, storage_path: Path) -> SyncFailedError | None:
    """The failure as a full disk, when that is what it was: said so by the error, or an error of
    the storage of another kind (a lake's SQLite catalog says "disk I/O error", a store that could
    not be opened again) on a disk that is full. None when it was something else (Snowflake's
    errors keep their own message), or already says so."""
    if DISK_FULL_MESSAGE in str(exc):
        return None
    nearly_full = False
    if isinstance(exc, duckdb.Error | OSError | StoreBusyError):
        with contextlib.suppress(OSError):
            nearly_full = min(_free_space(data_dir, storage_path).values()) < NEARLY_FULL_BYTES
    return disk_full(exc, data_dir, storage_path) if is_disk_full(exc) or nearly_full else None


def conversion_failed(exc: Exception) -> SyncFailedError:
    """A value the target type cannot hold: say which limits are known to bite."""
    first_line = str(exc).strip().splitlines()[0]
    return SyncFailedError(
        f"A value could not be stored in its DuckDB type: {first_line}. TIMESTAMP_NTZ(7-9) maps to "
        "TIMESTAMP_NS, which only holds the years 1677-2262; sync such a column through a view that casts "
        "it to TIMESTAMP_NTZ(6), or leave it out. The table was not changed.", remedy="exclude_columns"
    )


@contextlib.contextmanager
def polling(tick: Callable[[], None], interval_s: float, name: str) -> Iterator[None]:
    """Call `tick` every `interval_s` in a background thread while the block runs: progress for
    work (a GET, an INSERT) that reports nothing until it is done."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(OSError, duckdb.Error):  # progress is best effort, never fatal
                tick()

    watcher = threading.Thread(target=loop, name=name, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


@contextlib.contextmanager
def watch_query_progress(con: duckdb.DuckDBPyConnection, report: Callable[[float], None] | None,
                         interval_s: float = 0.5, should_stop: Callable[[], bool] | None = None) -> Iterator[None]:
    """Report the running statement's completed fraction: one INSERT of all files is fastest, and
    DuckDB's own progress keeps the user informed during it. A cancel interrupts the statement."""
    if report is None and should_stop is None:
        yield
        return

    def tick() -> None:
        if should_stop is not None and should_stop():
            con.interrupt()
            return
        percent = con.query_progress()
        if report is not None and percent >= 0:
            report(min(percent, 100.0) / 100.0)

    with polling(tick, interval_s, "sfduck-load-progress"):
        yield


@contextlib.contextmanager
def watch_downloads(local_dir: Path, names: Sequence[str], report: Report, interval_s: float = 0.25
                    ) -> Iterator[None]:
    """Report "file i of n" while one parallel GET runs, by watching the files arrive."""
    expected = set(names)
    reported = [0]

    def tick() -> None:
        arrived = [p for p in local_dir.glob("*") if p.name in expected]
        if len(arrived) != reported[0]:
            reported[0] = len(arrived)
            size = sum(p.stat().st_size for p in arrived)
            report(files_done=reported[0], bytes_done=size,
                       message=f"Downloading file {min(reported[0] + 1, len(expected))} of {len(expected)}")

    with polling(tick, interval_s, "sfduck-download-progress"):
        yield


def load_parquet_files(con: duckdb.DuckDBPyConnection, target: str, desc: TableDescription,
                       files: Sequence[str], on_fraction: Callable[[float], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> None:
    """Insert unloaded Parquet files, cast column by column to the target types.

    `union_by_name` plus explicit casts make files whose physical types disagree (Snowflake's
    unload optimisation) load into one consistent table.
    """
    if not files:
        return
    exprs = ", ".join(p.duckdb_expression(from_stage=True) for p in desc.plans)
    try:
        with watch_query_progress(con, on_fraction, should_stop=should_stop):
            con.execute(f"INSERT INTO {target} SELECT {exprs} FROM read_parquet(?, union_by_name = true)",
                        [list(files)])
    except (duckdb.ConversionException, duckdb.OutOfRangeException) as exc:
        raise conversion_failed(exc) from None


@dataclass
class ArrowSpool:
    """Arrow results written to local Parquet files, one group of files per batch schema."""

    segments: list[list[str]]
    rows: int = 0
    bytes_received: int = 0


def spool_arrow_batches(batches: Iterable[pa.Table], desc: TableDescription, directory: Path,
                        on_batch: Callable[[int, int], None] | None = None) -> ArrowSpool:
    """Write the connector's result chunks to Parquet in `directory`, before any DuckDB lock is
    taken: the network download (minutes, for a big table) then never blocks readers or other
    syncs, and memory stays bounded by one chunk.

    The connector's chunks can differ in schema (int8 here, int64 or decimal there): chunks are
    widened without loss to a common form (any integer -> int64); a chunk that still differs, such
    as decimals once values outgrow int64, starts a new segment (its own INSERT later) rather than
    being cast lossily. Casting decimal(38,0) for every batch instead cost 4x on such columns.
    """
    names = [p.transfer_name for p in desc.plans]
    fallback = {p.transfer_name: p.arrow_type() for p in desc.plans}
    spool = ArrowSpool(segments=[])
    private_dir(directory)
    writer: pq.ParquetWriter | None = None

    def widened(batch: pa.RecordBatch) -> pa.RecordBatch:
        fields = []
        for name, col in zip(names, batch.columns, strict=True):
            t = col.type
            if pa.types.is_signed_integer(t) or (pa.types.is_unsigned_integer(t) and t.bit_width < 64):
                t = pa.int64()
            elif pa.types.is_null(t):  # an all-NULL chunk says nothing about the type
                t = fallback[name]
            fields.append(pa.field(name, t))
        schema = pa.schema(fields)
        if batch.schema.equals(schema):
            return batch
        return pa.RecordBatch.from_arrays(
            [c if c.type == f.type else c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)],
            schema=schema,
        )

    try:
        for table in batches:
            for raw in table.to_batches(max_chunksize=ARROW_BATCH_ROWS):
                batch = widened(raw.rename_columns(names))
                if writer is None or not writer.schema.equals(batch.schema):
                    if writer is not None:
                        writer.close()
                    path = directory / f"segment_{len(spool.segments):04d}.parquet"
                    writer = pq.ParquetWriter(path, batch.schema, compression="snappy")
                    spool.segments.append([str(path)])
                writer.write_batch(batch, row_group_size=ARROW_BATCH_ROWS)
                spool.rows += batch.num_rows
                spool.bytes_received += batch.nbytes
                if on_batch is not None:
                    on_batch(spool.rows, spool.bytes_received)
            del table
            pa.default_memory_pool().release_unused()
    finally:
        if writer is not None:
            writer.close()
    return spool


def load_arrow_spool(con: duckdb.DuckDBPyConnection, target: str, desc: TableDescription, spool: ArrowSpool,
                     on_fraction: Callable[[float], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> None:
    """Insert a spool, one INSERT per segment, with the Arrow path's casts."""
    exprs = ", ".join(p.duckdb_expression(from_stage=False) for p in desc.plans)
    for files in spool.segments:
        try:
            with watch_query_progress(con, on_fraction, should_stop=should_stop):
                con.execute(f"INSERT INTO {target} SELECT {exprs} FROM read_parquet(?)", [files])
        except (duckdb.ConversionException, duckdb.OutOfRangeException) as exc:
            raise conversion_failed(exc) from None


class _StageRefused(Exception):
    """Snowflake would not unload to the stage (forbidden, unsupported): arrow can still work."""

    def __init__(self, cause: SourceError) -> None:
        super().__init__(str(cause))
        self.cause = cause
