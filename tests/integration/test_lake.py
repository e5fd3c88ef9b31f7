"""A DuckLake target: readers never wait and only ever see whole versions, and every job knows
its snapshot. (The sync, incremental and CLI tests run against a lake too: see conftest.)"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sfduck_core.config import Settings, parse_target
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.preview import first_rows, row_count, sync_versions
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.pg_cluster import postgres_cluster

ROOT = Path(__file__).resolve().parents[2]
DDL = "ID NUMBER(38,0) PRIMARY KEY, NAME VARCHAR, UPDATED_AT TIMESTAMP_NTZ(6)"
ROWS = 20_000


@pytest.fixture
def target_kind() -> str:
    return "lake"


def insert_rows(sf, schema: str, table: str, first: int, n: int, name: str) -> None:
    sf.cursor().execute(
        f'INSERT INTO "{schema}"."{table}" SELECT SEQ4() + {first}, \'{name} \' || SEQ4(), '
        f"DATEADD(second, SEQ4() + {first}, '2024-01-01 00:00:00'::TIMESTAMP_NTZ) "
        f"FROM TABLE(GENERATOR(ROWCOUNT => {n}))")


def signature(engine: SyncEngine, schema: str, table: str) -> list:
    with engine.store.connect() as con:
        count, digest = con.execute(
            f'SELECT count(*), coalesce(sum(hash(t)), 0)::VARCHAR FROM "{schema}"."{table}" t').fetchone()
    return [count, digest]


def read_while(engine: SyncEngine, schema: str, table: str, tmp_path: Path, work: Callable[[], None]
               ) -> list[dict]:
    """Run `work` while an independent process reads the table every 50 ms; return its reads."""
    target = engine.settings.storage
    stop = tmp_path / f"stop-reader-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "integration" / "lake_reader.py"),
                             target.catalog_location, target.data_path or "", schema, table, str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.poll() else "no start"
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        work()
        stop.touch()
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return [json.loads(line) for line in lines if line.strip()]


def assert_whole_versions(reads: list[dict], old: list, new: list) -> None:
    assert reads, "the reader read nothing"
    errors = [r["error"] for r in reads if "error" in r]
    assert errors == []
    seen = [r["sig"] for r in reads]
    assert all(sig in (old, new) for sig in seen), [s for s in seen if s not in (old, new)][:3]
    slowest = max(r["s"] for r in reads)
    assert slowest < 1.0, f"a read took {slowest:.3f} s"
    assert seen[-1] == new


def test_readers_never_wait_and_see_whole_versions(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                  source_table: Callable[..., str], tmp_path: Path) -> None:
    schema = emulator.schema
    table = source_table(DDL, "LAKE")
    insert_rows(sf, schema, table, 1, ROWS, "first")
    engine.register(schema, table, incremental_key="UPDATED_AT")
    first = engine.sync(SyncRequest(schema, table))
    old = signature(engine, schema, table)

    # a full sync: the new version of the table appears in one snapshot
    sf.cursor().execute(f'UPDATE "{schema}"."{table}" SET NAME = \'second\' WHERE ID <= 5000')
    insert_rows(sf, schema, table, ROWS + 1, 1000, "added")
    full: list[dict] = []
    reads = read_while(engine, schema, table, tmp_path,
                       lambda: full.append(engine.sync(SyncRequest(schema, table, force=True))))
    new = signature(engine, schema, table)
    assert new != old and new[0] == ROWS + 1000
    assert_whole_versions(reads, old, new)

    # an incremental upsert (and its deletes) in one snapshot
    sf.cursor().execute(f'UPDATE "{schema}"."{table}" SET NAME = \'third\', '
                        "UPDATED_AT = '2030-01-01 00:00:00' WHERE ID <= 3000")
    sf.cursor().execute(f'DELETE FROM "{schema}"."{table}" WHERE ID > {ROWS + 500}')
    incremental: list[dict] = []
    reads = read_while(engine, schema, table, tmp_path, lambda: incremental.append(engine.sync(
        SyncRequest(schema, table, strategy="incremental", detect_deletes=True, force=True))))
    newer = signature(engine, schema, table)
    assert newer[0] == ROWS + 500
    assert_whole_versions(reads, new, newer)

    # every job that changed the lake knows the snapshot it committed, in order
    snapshots = [job["stats"]["snapshot_id"] for job in (first, full[0], incremental[0])]
    assert snapshots == sorted(snapshots) and len(set(snapshots)) == 3
    history = {job["sync_id"]: job for job in engine.store.history(schema, table)}
    assert [history[j["sync_id"]]["stats"]["snapshot_id"] for j in (first, full[0], incremental[0])] == snapshots

    # and each of those versions can still be previewed
    counts = [row_count(engine.store, schema, table, snapshot_id=s) for s in snapshots]
    assert counts == [ROWS, ROWS + 1000, ROWS + 500]
    assert [j["sync_id"] for j in sync_versions(engine.store, schema, table)] == [
        incremental[0]["sync_id"], full[0]["sync_id"], first["sync_id"]]
    assert first_rows(engine.store, schema, table, 5, snapshot_id=snapshots[0])["NAME"].str.startswith("first").all()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_cluster() as dsn:
        if dsn is None:
            pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
        yield dsn


def test_a_postgres_catalog_lake_syncs_like_the_others(postgres: str, emulator: EmulatorSettings,
                                                        settings: Settings, tmp_path: Path) -> None:
    target = parse_target(f"ducklake:postgres:{postgres}", str(tmp_path / "pg-lake-data"), Path)
    engine = SyncEngine(dataclasses.replace(settings, target=target))
    schema = emulator.schema
    engine.register(schema, "ORDERS", incremental_key="UPDATED_AT")
    first = engine.sync(SyncRequest(schema, "ORDERS"))
    again = engine.sync(SyncRequest(schema, "ORDERS", strategy="incremental", force=True))
    assert first["status"] == again["status"] == "completed"
    assert again["stats"]["snapshot_id"] > first["stats"]["snapshot_id"]
    with engine.store.connect() as con:
        assert con.execute(f'SELECT count(*) FROM "{schema}"."ORDERS"').fetchone()[0] == first["stats"]["rows_processed"]
    assert "password" not in engine.settings.describe()
