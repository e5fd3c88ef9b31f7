"""One benchmark method in its own process: `python bench/worker.py '<json spec>'`.

The parent (run.py) measures this process's peak RSS with os.wait4; this process times only the
operation itself (imports and untimed setup excluded) and prints one JSON line with the result.
Everything a method needs (files, a prepared DuckDB file to replace, a dlt pipeline directory) is
prepared by the parent or by a `prep_*` spec run in a separate process, so it does not count here.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datagen
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = "BENCH"
TABLE = "fact"
STAGING = "__sfduck_staging_bench"
LOWER_NAMES = [name.lower() for name, _ in datagen.COLUMNS]

Result = dict[str, Any]


def _desc() -> Any:
    from sfduck_core.source import SourceColumn, TableDescription
    from sfduck_core.typemap import plan_columns

    plans = plan_columns(datagen.COLUMNS)
    cols = tuple(SourceColumn(n, t, True) for n, t in datagen.COLUMNS)
    return TableDescription(SCHEMA, TABLE, cols, (datagen.KEY,), tuple(plans))


def _files(spec: dict) -> list[str]:
    return sorted(glob.glob(os.path.join(spec["data_dir"], "*.parquet")))


def _count(db: str, table: str) -> int:
    con = duckdb.connect(db, read_only=True)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def _store(spec: dict) -> Any:
    """sfduck's Store on the spec's target: the DuckDB file `db`, or a DuckLake with a SQLite
    catalog when the spec has `lake` ({"catalog": file, "data_path": folder}), parsed as
    SFDUCK_TARGET=ducklake:sqlite:<catalog> with SFDUCK_LAKE_DATA_PATH would be."""
    from sfduck_core.config import parse_target
    from sfduck_core.store import Store

    lake = spec.get("lake")
    target = parse_target(f"ducklake:sqlite:{lake['catalog']}", lake["data_path"], Path) if lake else None
    return Store(lake["catalog"] if lake else spec["db"], memory_limit=spec.get("memory_limit", "256MB"),
                 target=target)


def _count_target(spec: dict) -> int:
    """Rows of the synced table, through sfduck (a file busy with a reader is waited for)."""

    with _store(spec).connect(read_only=True) as con:
        return _store(spec).storage.count_rows(con, SCHEMA, TABLE)


def _target_mb(spec: dict) -> float:
    """Size of the file, or of the lake's catalog and data folder."""
    if not spec.get("lake"):
        return round(os.path.getsize(spec["db"]) / 2**20, 1)
    lake = spec["lake"]
    paths = [p for p in Path(lake["data_path"]).rglob("*") if p.is_file()]
    paths += [p for p in Path(lake["catalog"]).parent.glob(Path(lake["catalog"]).name + "*") if p.is_file()]
    return round(sum(p.stat().st_size for p in paths) / 2**20, 1)


def _timed(fn: Callable[[], dict | None]) -> Result:
    t0 = time.perf_counter()
    extra = fn() or {}
    return {"seconds": time.perf_counter() - t0, "extra": extra}


# --- DuckDB-only methods --------------------------------------------------------------------


def reference(spec: dict) -> Result:
    """The physical reference: CTAS from the same Parquet files into a fresh file."""

    def run() -> None:
        con = duckdb.connect(spec["db"])
        if spec.get("memory_limit"):
            con.execute(f"SET memory_limit = '{spec['memory_limit']}'")
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{spec['data_dir']}/*.parquet')")
        con.close()

    res = _timed(run)
    res["rows"] = _count(spec["db"], "t")
    return res


def _sfduck_full_load(spec: dict, fill: Callable[[duckdb.DuckDBPyConnection, str, Any], None]) -> Result:
    """sfduck's atomic full-sync load: staging table, fill, count check, DROP+RENAME, one COMMIT."""
    from sfduck_core.sqlident import qualified

    desc = _desc()
    store = _store(spec)
    marks: dict[str, float] = {}
    window: list[float] = []  # CLOCK_MONOTONIC is system-wide: a reader process can compare

    def run() -> dict:
        t0 = time.perf_counter()
        window.append(time.monotonic())
        with store.connect() as con:
            marks["open_s"] = time.perf_counter() - t0  # a file busy with a reader is waited for
            con.execute("BEGIN")
            store.storage.create_table(con, SCHEMA, STAGING, [(p.name, p.duckdb_type) for p in desc.plans])
            fill(con, qualified(SCHEMA, STAGING), desc)
            got = store.storage.count_rows(con, SCHEMA, STAGING)
            marks["load_s"] = time.perf_counter() - t0
            store.storage.replace_table(con, SCHEMA, TABLE, STAGING)
            con.execute("COMMIT")
            marks["commit_s"] = time.perf_counter() - t0
        window.append(time.monotonic())
        return {"rows_loaded": got, **{k: round(v, 3) for k, v in marks.items()}, "window": window}

    res = _timed(run)
    res["rows"] = _count_target(spec)
    res["extra"]["file_mb"] = _target_mb(spec)
    return res


def sfduck_parquet(spec: dict) -> Result:
    import inspect

    from sfduck_core.transfer import load_parquet_files

    files = _files(spec)
    # the sync path watches DuckDB's progress while loading; measure it the same way when available
    kwargs = {"on_fraction": lambda f: None} if "on_fraction" in inspect.signature(load_parquet_files).parameters else {}
    return _sfduck_full_load(spec, lambda con, target, desc: load_parquet_files(con, target, desc, files, **kwargs))


def _arrow_chunks(path: str) -> Iterator[pa.Table]:
    """Replay result chunks on demand (no read-ahead), one pyarrow.Table per chunk, like the connector."""
    with pa.OSFile(path) as source:
        reader = pa.ipc.open_stream(source)
        for batch in reader:
            yield pa.Table.from_batches([batch])


def sfduck_arrow(spec: dict) -> Result:
    from sfduck_core.transfer import load_arrow_spool, spool_arrow_batches

    def fill(con: duckdb.DuckDBPyConnection, target: str, desc: Any) -> None:
        # as the arrow transport does: spool to local Parquet (no lock held), then load
        spool = spool_arrow_batches(_arrow_chunks(spec["arrow_file"]), desc, Path(spec["db"]).parent / "spool")
        load_arrow_spool(con, target, desc, spool)

    return _sfduck_full_load(spec, fill)


def arrow_stream_insert(spec: dict) -> Result:
    """Alternative for the Arrow transport: ONE INSERT scanning a RecordBatchReader over the chunks
    (each re-cut to 122,880 rows), instead of one INSERT per batch."""

    def fill(con: duckdb.DuckDBPyConnection, target: str, desc: Any) -> None:
        exprs = ", ".join(p.duckdb_expression(from_stage=False) for p in desc.plans)

        def batches() -> Iterator[pa.RecordBatch]:
            for table in _arrow_chunks(spec["arrow_file"]):
                yield from table.to_batches(max_chunksize=122_880)

        reader = pa.RecordBatchReader.from_batches(datagen.arrow_schema(), batches())
        con.register("bench_reader", reader)
        con.execute(f"INSERT INTO {target} SELECT {exprs} FROM bench_reader")
        con.unregister("bench_reader")

    return _sfduck_full_load(spec, fill)


def _arrow_for_python(table: pa.Table) -> pa.Table:
    """Stage-shaped columns -> real names and types (epoch micros -> timestamp) for dlt / pandas."""
    cols = list(table.columns)
    cols[datagen.TS_INDEX] = cols[datagen.TS_INDEX].cast(pa.timestamp("us"))
    return pa.Table.from_arrays(cols, names=LOWER_NAMES)


def pandas_path(spec: dict) -> Result:
    """The common path: Arrow -> to_pandas() -> DuckDB, replacing the table in one statement."""

    def run() -> None:
        df = _arrow_for_python(pq.read_table(_files(spec))).to_pandas()
        con = duckdb.connect(spec["db"])
        con.register("df", df)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        con.execute(f'CREATE OR REPLACE TABLE "{SCHEMA}"."{TABLE}" AS SELECT * FROM df')
        con.close()

    res = _timed(run)
    res["rows"] = _count(spec["db"], f'"{SCHEMA}"."{TABLE}"')
    return res


# --- incremental upsert ----------------------------------------------------------------------


def _upsert(spec: dict, merge: Callable[[duckdb.DuckDBPyConnection], dict | None]) -> Result:
    """Load the change set into a staging table (sfduck's loader), merge, drop staging, COMMIT."""
    from sfduck_core.sqlident import qualified
    from sfduck_core.transfer import load_parquet_files

    desc = _desc()
    store = _store(spec)
    files = _files(spec)

    def run() -> dict:
        t0 = time.perf_counter()
        with store.connect() as con:
            opened = time.perf_counter()
            con.execute("BEGIN")
            store.storage.create_table(con, SCHEMA, STAGING, [(p.name, p.duckdb_type) for p in desc.plans])
            load_parquet_files(con, qualified(SCHEMA, STAGING), desc, files)
            t1 = time.perf_counter()
            info = merge(con) or {}
            con.execute(f"DROP TABLE {qualified(SCHEMA, STAGING)}")
            t2 = time.perf_counter()
            con.execute("COMMIT")
        t3 = time.perf_counter()
        return {"open_s": round(opened - t0, 3), "stage_load_s": round(t1 - t0, 3), "merge_s": round(t2 - t1, 3),
                "commit_close_s": round(t3 - t2, 3), **info}

    res = _timed(run)
    res["rows"] = _count_target(spec)
    res["extra"]["file_mb"] = _target_mb(spec)
    return res


def sfduck_upsert(spec: dict) -> Result:
    from sfduck_core.incremental import upsert

    cols = [n for n, _ in datagen.COLUMNS]

    def merge(con: duckdb.DuckDBPyConnection) -> dict:
        r = upsert(_store(spec).storage, con, SCHEMA, TABLE, STAGING, cols, [datagen.KEY], datagen.ORDER_BY)
        return {"inserted": r.rows_inserted, "updated": r.rows_updated, "unchanged": r.rows_unchanged}

    return _upsert(spec, merge)


def duckdb_merge_into(spec: dict) -> Result:
    def merge(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f'MERGE INTO "{SCHEMA}"."{TABLE}" t USING "{SCHEMA}"."{STAGING}" s ON t."ID" = s."ID" '
                    "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")

    return _upsert(spec, merge)


def duckdb_delete_insert(spec: dict) -> Result:
    def merge(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f'DELETE FROM "{SCHEMA}"."{TABLE}" t USING "{SCHEMA}"."{STAGING}" s WHERE t."ID" = s."ID"')
        con.execute(f'INSERT INTO "{SCHEMA}"."{TABLE}" SELECT * FROM "{SCHEMA}"."{STAGING}"')

    return _upsert(spec, merge)


# --- dlt -------------------------------------------------------------------------------------


def _dlt_pipeline(spec: dict) -> Any:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    # replace through a staging dataset, swapped in one transaction: atomic like sfduck
    os.environ["DESTINATION__REPLACE_STRATEGY"] = "insert-from-staging"
    import dlt

    return dlt.pipeline(pipeline_name="bench", pipelines_dir=spec["dlt_dir"],
                        destination=dlt.destinations.duckdb(spec["db"]), dataset_name="bench")


def _dlt_run(spec: dict, disposition: str) -> Result:
    import dlt

    pipeline = _dlt_pipeline(spec)
    files = _files(spec)
    hints: dict[str, Any] = {"primary_key": "id"} if disposition == "merge" else {}

    @dlt.resource(name=TABLE, write_disposition=disposition, **hints)
    def fact() -> Iterator[pa.Table]:
        for f in files:
            yield _arrow_for_python(pq.read_table(f))

    info: dict[str, Any] = {}

    def run() -> None:
        load = pipeline.run(fact())
        info["loads"] = len(load.loads_ids)

    res = _timed(run)
    res["extra"].update(info)
    res["rows"] = _count(spec["db"], f"bench.{TABLE}")
    return res


def dlt_replace(spec: dict) -> Result:
    return _dlt_run(spec, "replace")


def dlt_merge(spec: dict) -> Result:
    return _dlt_run(spec, "merge")


# --- end to end through the emulator ----------------------------------------------------------


def e2e(spec: dict) -> Result:
    from sfduck_core.config import Settings, SnowflakeSettings
    from sfduck_core.engine import SyncEngine, SyncRequest

    emu = spec["emulator"]
    work = Path(spec["work_dir"])
    sf = SnowflakeSettings(**emu)  # the emulator's JSON line has exactly these fields
    engine = SyncEngine(Settings(snowflake=sf, duckdb_path=work / "sfduck.duckdb", data_dir=work / "data",
                                 demo=False, lock_timeout_s=10.0))
    engine.register(emu["schema"], "data")
    job: dict[str, Any] = {}

    def run() -> None:
        job.update(engine.sync(SyncRequest(emu["schema"], "data", transport=spec["transport"])))

    res = _timed(run)
    stats = job["stats"]
    keep = ("unload_s", "query_s", "download_s", "load_s", "duration_s", "files", "transport", "rows_processed")
    res["extra"] = {k: stats.get(k) for k in keep if k in stats}
    res["rows"] = int(stats.get("rows_processed") or 0)
    return res


# --- preparation (untimed, own process) -------------------------------------------------------


def prep_sfduck_table(spec: dict) -> Result:
    """A DuckDB file holding the existing version of the table (sfduck's types), to be replaced."""
    res = sfduck_parquet(spec)
    if not spec.get("lake"):  # a lake's commit leaves nothing to checkpoint
        con = duckdb.connect(spec["db"])
        con.execute("CHECKPOINT")
        con.close()
    return res


def prep_dlt(spec: dict) -> Result:
    return _dlt_run(spec, spec["disposition"])


def baseline(spec: dict) -> Result:
    """Interpreter + imports only: the floor under every method's peak RSS."""
    import sfduck_core.transfer  # noqa: F401

    if spec.get("dlt"):
        import dlt  # noqa: F401
    return {"seconds": 0.0, "rows": 0, "extra": {}}


METHODS: dict[str, Callable[[dict], Result]] = {
    f.__name__: f for f in (
        reference, sfduck_parquet, sfduck_arrow, arrow_stream_insert, pandas_path, sfduck_upsert,
        duckdb_merge_into, duckdb_delete_insert, dlt_replace, dlt_merge, e2e, prep_sfduck_table, prep_dlt,
        baseline,
    )
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = METHODS[spec["method"]](spec)
    sys.stdout.write("BENCH_RESULT " + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
