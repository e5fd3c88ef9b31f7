"""One contract for every Storage: the DuckDB file, a lake on SQLite, a lake on PostgreSQL.

The targets are declared once (TARGETS, in the way dlt's `destinations_configs()` declares its
matrix); every test runs against each, through the interface only, and what a target declares in
its Capabilities is checked against what its methods do.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from sfduck_core.config import Target, parse_target
from sfduck_core.storage import (
    METADATA_SCHEMA,
    Storage,
    StoreBusyError,
    UnsupportedByTargetError,
    lake_setup_sql,
    open_storage,
)
from tests.integration.pg_cluster import postgres_cluster

pytestmark = pytest.mark.integration

# the column types the contract looks at: Snowflake's NUMBER(38,0), TIME(9) and VECTOR(FLOAT, 3)
TYPES = ("HUGEINT", "TIME_NS", "FLOAT[3]")


@dataclass(frozen=True)
class TargetCase:
    name: str
    stored_types: tuple[str, ...]  # what TYPES become in this target, in order


TARGETS = (
    TargetCase("file", ("HUGEINT", "TIME_NS", "FLOAT[3]")),
    TargetCase("lake-sqlite", ("DECIMAL(38,0)", "TIME", "FLOAT[]")),
    TargetCase("lake-postgres", ("DECIMAL(38,0)", "TIME", "FLOAT[]")),
)
_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str | None]:
    with postgres_cluster() as location:
        yield location


def _fresh_postgres_database(location: str) -> str:
    """A database of its own per test: a lake's catalog is a whole database."""
    import psycopg

    name = f"contract_{next(_databases)}"
    with psycopg.connect(location, autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    return location.replace("dbname=postgres", f"dbname={name}")


def _target(case: TargetCase, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    if case.name == "file":
        return Target("duckdb", path=tmp_path / "data.duckdb")
    if case.name == "lake-sqlite":
        return parse_target(f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}", str(tmp_path / "lake"), Path)
    location = request.getfixturevalue("postgres")
    if location is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); CI has it")
    return parse_target(f"ducklake:postgres:{_fresh_postgres_database(location)}", str(tmp_path / "lake"), Path)


@pytest.fixture(params=TARGETS, ids=[case.name for case in TARGETS])
def case(request: pytest.FixtureRequest) -> TargetCase:
    return request.param


@pytest.fixture
def storage(case: TargetCase, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    return open_storage(_target(case, tmp_path, request), lock_timeout_s=5.0)


def _table_with_rows(storage: Storage, table: str, rows: int) -> None:
    with storage.connect() as con:
        con.execute("BEGIN")
        storage.create_table(con, "S", table, [("ID", "BIGINT")])
        con.execute(f'INSERT INTO "S"."{table}" SELECT range FROM range({rows})')
        con.execute("COMMIT")


def test_a_created_table_exists_with_its_columns_in_the_targets_types(storage: Storage, case: TargetCase) -> None:
    assert tuple(storage.column_type(t) for t in TYPES) == case.stored_types
    assert storage.capabilities.exact_types == (case.stored_types == TYPES)
    with storage.connect() as con:
        assert not storage.table_exists(con, "S", "T")
        storage.create_table(con, "S", "T", [(f"C{i}", t) for i, t in enumerate(TYPES)])
        assert storage.table_exists(con, "S", "T")
        assert storage.table_columns(con, "S", "T") == [(f"C{i}", t) for i, t in enumerate(case.stored_types)]
        assert storage.count_rows(con, "S", "T") == 0


def test_a_replace_inside_a_rolled_back_transaction_leaves_the_old_table(storage: Storage) -> None:
    _table_with_rows(storage, "T", 3)
    staging = storage.staging_name("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    for outcome, expected in (("ROLLBACK", 3), ("COMMIT", 5)):
        with storage.connect() as con:
            con.execute("BEGIN")
            storage.create_table(con, "S", staging, [("ID", "BIGINT")])
            con.execute(f'INSERT INTO "S"."{staging}" SELECT range FROM range(5)')
            storage.replace_table(con, "S", "T", staging)
            assert storage.count_rows(con, "S", "T") == 5
            con.execute(outcome)
        with storage.connect(read_only=True) as con:
            assert storage.count_rows(con, "S", "T") == expected
            assert not storage.table_exists(con, "S", staging)


def test_synced_tables_leave_out_staging_and_metadata(storage: Storage) -> None:
    _table_with_rows(storage, "T", 1)
    storage.ensure_schema(METADATA_SCHEMA)
    storage.ensure_schema("S")  # again: nothing changes
    with storage.connect() as con:
        storage.create_table(con, METADATA_SCHEMA, "jobs", [("ID", "BIGINT")])
        storage.create_table(con, "S", storage.staging_name("a-b-c-d-e"), [("ID", "BIGINT")])
    assert storage.synced_tables() == [("S", "T")]
    assert storage.staging_name("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b") != storage.staging_name(
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c")


def test_a_read_only_connection_reads_and_never_waits_where_declared(storage: Storage) -> None:
    _table_with_rows(storage, "T", 4)
    storage.ping(wait_s=1.0)
    if not storage.capabilities.readers_never_wait:
        with storage.connect(read_only=True) as con:
            assert storage.count_rows(con, "S", "T") == 4
        return
    seen: list[int] = []
    with storage.connect() as writer:  # a writer's turn held, mid-transaction
        writer.execute("BEGIN")
        writer.execute('DELETE FROM "S"."T"')

        def read() -> None:
            with storage.connect(read_only=True) as con:
                seen.append(storage.count_rows(con, "S", "T"))

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=60)  # a hang guard: a reader that waited for the turn would still be waiting
        finished_while_writing = not reader.is_alive()
        writer.execute("ROLLBACK")
    reader.join()
    assert finished_while_writing and seen == [4]


def test_versions_are_offered_exactly_where_declared(storage: Storage) -> None:
    _table_with_rows(storage, "T", 3)
    caps = storage.capabilities
    with storage.connect() as con:
        if not caps.snapshots:
            for attempt in (lambda: storage.snapshots(con), lambda: storage.sync_snapshots(con),
                            lambda: storage.label_commit(con, "sync-1", "a sync")):
                with pytest.raises(UnsupportedByTargetError, match="applies to a DuckLake target"):
                    attempt()
        if not caps.time_travel:
            with pytest.raises(UnsupportedByTargetError, match="Reading an earlier version applies to a DuckLake"):
                storage.table_at("S", "T", 1)
        if not caps.retention:
            with pytest.raises(UnsupportedByTargetError, match="Retention applies to a DuckLake target"):
                storage.expire_snapshots(con, [1])
    assert storage.table_at("S", "T", None)[1] == []  # the current table: every target
    if not caps.snapshots:
        return
    with storage.connect() as con:
        before = storage.snapshots(con)[-1].snapshot_id
        con.execute("BEGIN")
        con.execute('INSERT INTO "S"."T" VALUES (100), (101)')
        storage.label_commit(con, "sync-1", "a sync of S.T")
        con.execute("COMMIT")
        labelled = storage.sync_snapshots(con)["sync-1"]
        assert labelled in [s.snapshot_id for s in storage.snapshots(con)] and labelled > before
        if caps.time_travel:
            source, params = storage.table_at("S", "T", before)
            assert con.execute(f"SELECT count(*) FROM {source}", params).fetchone()[0] == 3
        if caps.retention:
            done = storage.expire_snapshots(con, [before])
            assert done["snapshots_expired"] == 1
            assert before not in [s.snapshot_id for s in storage.snapshots(con)]
            assert storage.count_rows(con, "S", "T") == 5


_HOLD = """
import duckdb, json, sys, time
spec = json.loads(sys.argv[1])
if spec.get("setup"):
    con = duckdb.connect()
    for sql in spec["setup"]:
        con.execute(sql)
else:
    con = duckdb.connect(spec["path"], read_only=True)
con.execute('SELECT count(*) FROM "S"."T"').fetchone()
print("held", flush=True)
time.sleep(120)
"""


def test_an_analyst_holding_the_target_read_only_is_named_or_never_in_the_way(storage: Storage) -> None:
    """A child process (an analyst's Python) holds the target open read-only: a target whose
    readers wait names it (pid and program) when it gives up; one whose readers never wait lets
    sfduck write meanwhile."""
    _table_with_rows(storage, "T", 2)
    spec = ({"setup": lake_setup_sql(storage.target, read_only=True)} if storage.capabilities.readers_never_wait
            else {"path": str(storage.path)})
    storage.release()
    child = subprocess.Popen([sys.executable, "-c", _HOLD, json.dumps(spec)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        quick = open_storage(storage.target, lock_timeout_s=0.5)
        if storage.capabilities.readers_never_wait:
            with quick.connect() as con:
                con.execute('INSERT INTO "S"."T" VALUES (7)')
            return
        with pytest.raises(StoreBusyError) as info, quick.connect():
            pass
        holder = info.value.holder
        assert holder is not None and holder.pid == child.pid
        assert holder.program == psutil.Process(child.pid).name()
        assert f"{holder.program} (pid {child.pid})" in str(info.value)
    finally:
        child.kill()
        child.wait()
