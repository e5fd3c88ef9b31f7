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
from sfduck_core.errors import StoreBusyError
from sfduck_core.preview import first_rows, row_count, sync_versions
from sfduck_core.progress import SyncProgress
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import env_for
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


class LakeReader:
    """An independent process reading the table every 50 ms (see lake_reader.py); its reads are
    collected as they arrive, so a test can wait for reads made at a moment of its choosing."""

    def __init__(self, engine: SyncEngine, schema: str, table: str, tmp_path: Path) -> None:
        target = engine.settings.storage
        self.stop_file = tmp_path / f"stop-reader-{uuid.uuid4().hex}"
        self.reads: list[dict] = []
        self.arrived = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "integration" / "lake_reader.py"), target.catalog_location,
             target.data_path or "", schema, table, str(self.stop_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout.readline().strip() == "READY", self.proc.stderr.read() if self.proc.poll() else ""
        self.collector = threading.Thread(target=self._collect, daemon=True)
        self.collector.start()

    def _collect(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                with self.arrived:
                    self.reads.append(json.loads(line))
                    self.arrived.notify_all()

    def reads_after(self, count: int, more: int) -> list[dict]:
        """Block until `more` reads beyond the first `count` have come back. The generous bound only
        turns a reader stuck behind the writer into a failure instead of a hang."""
        with self.arrived:
            done = self.arrived.wait_for(lambda: len(self.reads) >= count + more, timeout=120)
            assert done, f"the reader came back {len(self.reads) - count} time(s) while the writer waited"
            return self.reads[count:]

    def stop(self) -> list[dict]:
        self.stop_file.touch()
        try:
            self.proc.wait(timeout=60)
            self.collector.join(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.reads


def sync_beside_reader(engine: SyncEngine, request: SyncRequest, tmp_path: Path) -> tuple[dict, list, list]:
    """Sync while a reader polls; the sync pauses inside its open write transaction (its
    "swapping" report comes after the rows are loaded and before COMMIT) until the reader has
    come back three more times. Returns the job, the reads made during that pause, all reads."""
    reader = LakeReader(engine, request.schema_name, request.table_name, tmp_path)
    during: list[dict] = []

    def hold_the_transaction_open(progress: SyncProgress) -> None:
        if progress.phase == "swapping" and not during:
            during.extend(reader.reads_after(len(reader.reads), 3))

    try:
        job = engine.sync(request, on_progress=hold_the_transaction_open)
        reader.reads_after(len(reader.reads), 2)  # the second began after the commit: it sees it
    finally:
        reads = reader.stop()
    return job, during, reads


def assert_whole_versions(reads: list[dict], during: list[dict], old: list, new: list) -> None:
    """Readers never wait: they came back while the writer held its transaction open, and saw the
    old version then; every read saw one whole version, and the last one the new."""
    errors = [r["error"] for r in reads if "error" in r]
    assert errors == []
    assert len(during) >= 3 and all(r["sig"] == old for r in during), during
    seen = [r["sig"] for r in reads]
    assert all(sig in (old, new) for sig in seen), [s for s in seen if s not in (old, new)][:3]
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
    full, during, reads = sync_beside_reader(engine, SyncRequest(schema, table, force=True), tmp_path)
    new = signature(engine, schema, table)
    assert full["status"] == "completed" and new != old and new[0] == ROWS + 1000
    assert_whole_versions(reads, during, old, new)

    # an incremental upsert (and its deletes) in one snapshot
    sf.cursor().execute(f'UPDATE "{schema}"."{table}" SET NAME = \'third\', '
                        "UPDATED_AT = '2030-01-01 00:00:00' WHERE ID <= 3000")
    sf.cursor().execute(f'DELETE FROM "{schema}"."{table}" WHERE ID > {ROWS + 500}')
    incremental, during, reads = sync_beside_reader(
        engine, SyncRequest(schema, table, strategy="incremental", detect_deletes=True, force=True), tmp_path)
    newer = signature(engine, schema, table)
    assert incremental["status"] == "completed" and newer[0] == ROWS + 500
    assert_whole_versions(reads, during, new, newer)

    # every job that changed the lake knows the snapshot it committed, in order
    snapshots = [job["stats"]["snapshot_id"] for job in (first, full, incremental)]
    assert snapshots == sorted(snapshots) and len(set(snapshots)) == 3
    history = {job["sync_id"]: job for job in engine.store.history(schema, table)}
    assert [history[j["sync_id"]]["stats"]["snapshot_id"] for j in (first, full, incremental)] == snapshots

    # and each of those versions can still be previewed
    counts = [row_count(engine.store, schema, table, snapshot_id=s) for s in snapshots]
    assert counts == [ROWS, ROWS + 1000, ROWS + 500]
    assert [j["sync_id"] for j in sync_versions(engine.store, schema, table)] == [
        incremental["sync_id"], full["sync_id"], first["sync_id"]]
    assert all(name.startswith("first") for name in
               first_rows(engine.store, schema, table, 5, snapshot_id=snapshots[0]).column("NAME").to_pylist())


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with postgres_cluster() as dsn:
        if dsn is None:
            pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
        yield dsn


@pytest.fixture
def postgres(postgres_server: str) -> str:
    """A database of its own on the module's cluster (a lake's catalog remembers its data path)."""
    import psycopg

    name = f"lake_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    return postgres_server.replace("dbname=postgres", f"dbname={name}")


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


HOLD_THE_LAKE = """
import sys
from pathlib import Path
from sfduck_core.config import parse_target
from sfduck_core.store import Store
target = parse_target(sys.argv[1], sys.argv[2], Path)
with Store(Path(sys.argv[3]), target=target).storage.connect():  # a writing connection: a writer's turn
    print("HOLDING", flush=True)
    sys.stdin.read()
"""


def test_writers_on_other_machines_take_turns_on_a_postgres_catalog(postgres: str, emulator: EmulatorSettings,
                                                                     settings: Settings, tmp_path: Path) -> None:
    """Another sfduck process (on any machine: the turn is an advisory lock of the catalog database)
    holds the lake: a write here waits its bounded time, then says so and changes nothing; once
    the other is done (or dies: the lock belongs to its connection), the write goes through."""
    uri, data = f"ducklake:postgres:{postgres}", str(tmp_path / "pg-turns-data")
    engine = SyncEngine(dataclasses.replace(settings, target=parse_target(uri, data, Path), lock_timeout_s=1.0))
    schema = emulator.schema
    engine.register(schema, "ORDERS")
    other = subprocess.Popen([sys.executable, "-c", HOLD_THE_LAKE, uri, data, str(tmp_path / "unused.duckdb")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        assert other.stdout.readline().strip() == "HOLDING", other.stderr.read()
        with pytest.raises(StoreBusyError, match="being written by another sfduck sync; waited 1 s"), \
                engine.store.connect():
            pass
        # registrations and jobs live in the metadata database: they never wait for the lake
        assert engine.register(schema, "ALL_TYPES").status == "active"
        assert engine.store.get_registration(schema, "ALL_TYPES") is not None
    finally:
        other.kill()  # dies holding the turn: its connection, and so its lock, goes with it
        other.wait()
    assert engine.register(schema, "ALL_TYPES").status == "active"

    # two processes syncing different tables into one PostgreSQL lake at once both complete
    env = {**env_for(emulator, tmp_path), "SFDUCK_TARGET": uri, "SFDUCK_LAKE_DATA_PATH": data,
           "SFDUCK_LOCK_TIMEOUT": "120"}
    syncs = [subprocess.Popen([sys.executable, "-m", "sfduck_core", "sync", schema, table], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for table in ("ORDERS", "ALL_TYPES")]
    outcomes = [(proc.wait(timeout=300), proc.communicate()) for proc in syncs]
    assert [code for code, _ in outcomes] == [0, 0], "\n".join(err for _, (_, err) in outcomes)
    assert {json.loads(out)["status"] for _, (out, _) in outcomes} == {"completed"}
