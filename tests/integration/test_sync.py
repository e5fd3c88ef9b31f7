"""Full syncs end to end: emulator over HTTP, the real connector, a real DuckDB file."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import (
    InvalidIdentifierError,
    NameCollisionError,
    NotRegisteredError,
    SourceError,
    SyncAlreadyRunningError,
    SyncFailedError,
    TableNotFoundError,
)
from sfduck_core.metadata.tables import allowed_tables, sync_jobs, table_sync_status
from sfduck_emulator.demo_data import ALL_TYPES_COLUMNS, ALL_TYPES_ROWS, ORDER_ROWS
from sfduck_emulator.settings import DEMO_SCHEMA, EmulatorSettings
from tests.integration.conftest import TEST_DATA_ROWS, env_for, read_only
from tests.integration.test_cli import ROOT, cli

TRANSPORTS = ["stage", "arrow"]
JSON_COLUMNS = {name for name, typ in ALL_TYPES_COLUMNS if typ in ("VARIANT", "OBJECT", "ARRAY")}


def read_table(engine: SyncEngine, schema: str, table: str, order_by: str) -> list[tuple]:
    with engine.store.connect() as con:
        return con.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY "{order_by}"').fetchall()


def sync(engine: SyncEngine, schema: str, table: str, **kwargs: object) -> dict:
    if engine.store.get_registration(schema, table) is None:
        engine.register(schema, table)
    return engine.sync(SyncRequest(schema, table, **kwargs))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_type_arrives_value_exact(engine: SyncEngine, emulator: EmulatorSettings, transport: str) -> None:
    job = sync(engine, emulator.schema, "ALL_TYPES", transport=transport)
    assert job["status"] == "completed"
    assert job["transport"] == transport
    rows = read_table(engine, emulator.schema, "ALL_TYPES", "ID")
    assert len(rows) == len(ALL_TYPES_ROWS)
    names = [name for name, _ in ALL_TYPES_COLUMNS]
    for got, expected in zip(rows, ALL_TYPES_ROWS, strict=True):
        for name, g, e in zip(names, got, expected, strict=True):
            if name in JSON_COLUMNS and g is not None:
                g = json.loads(g)
            assert g == e, f"{name}: got {g!r}, expected {e!r} ({transport})"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_duckdb_column_types_follow_the_exact_map(engine: SyncEngine, emulator: EmulatorSettings,
                                                   transport: str) -> None:
    sync(engine, emulator.schema, "ALL_TYPES", transport=transport)
    with engine.store.connect() as con:
        types = dict(engine.store.storage.table_columns(con, emulator.schema, "ALL_TYPES"))
    # a lake's Parquet files hold NUMBER(38,0) exactly as DECIMAL(38,0), not as HUGEINT (README)
    assert types["NUM_38_0"] == ("HUGEINT" if engine.store.storage.capabilities.exact_types else "DECIMAL(38,0)")
    assert types["NUM_18_0"] == "BIGINT"
    assert types["NUM_10_2"] == "DECIMAL(10,2)"
    assert types["NUM_38_10"] == "DECIMAL(38,10)"
    assert types["TS_TZ"] == "TIMESTAMP WITH TIME ZONE"
    assert types["VAR"] == "JSON"
    assert types["BIN"] == "BLOB"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_large_table_row_count_checked_and_stage_cleaned(engine: SyncEngine, emulator: EmulatorSettings,
                                                         settings, transport: str) -> None:
    job = sync(engine, emulator.schema, "data", transport=transport)
    stats = job["stats"]
    assert stats["rows_processed"] == stats["total_rows"] == TEST_DATA_ROWS
    assert stats["table_stats"]["row_count"] == TEST_DATA_ROWS
    assert stats["transport"] == transport
    assert stats["duration_s"] > 0
    if transport == "stage":
        assert stats["rows_unloaded"] == TEST_DATA_ROWS
        assert stats["stage_dropped"] is True
        assert stats["files"] >= 1
        assert not any((Path(settings.data_dir) / "tmp").glob("*/*.parquet"))
    with engine.store.connect() as con:
        assert engine.store.storage.count_rows(con, emulator.schema, "data") == TEST_DATA_ROWS
    status = engine.store.sync_status(emulator.schema, "data")
    assert status["last_status"] == "completed" and status["row_count"] == TEST_DATA_ROWS


def test_temporary_stage_is_dropped(engine: SyncEngine, emulator: EmulatorSettings, sf) -> None:
    job = sync(engine, emulator.schema, "ORDERS", transport="stage")
    stage_name = job["stats"]["stage"].rsplit(".", 1)[-1].strip('"')
    assert stage_name.startswith("SFDUCK_TMP_") and job["stats"]["stage_dropped"] is True
    stages = sf.cursor().execute(f"SHOW STAGES IN SCHEMA {emulator.database}.{emulator.schema}").fetchall()
    assert not [s for s in stages if stage_name in str(s)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_empty_table_syncs_to_an_empty_typed_table(engine: SyncEngine, emulator: EmulatorSettings,
                                                   transport: str) -> None:
    job = sync(engine, emulator.schema, "EMPTY_TABLE", transport=transport)
    assert job["status"] == "completed" and job["stats"]["rows_processed"] == 0
    with engine.store.connect() as con:
        assert engine.store.storage.count_rows(con, emulator.schema, "EMPTY_TABLE") == 0
        assert engine.store.storage.table_columns(con, emulator.schema, "EMPTY_TABLE")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mixed_case_and_quoted_names_are_kept_exactly(engine: SyncEngine, emulator: EmulatorSettings,
                                                      transport: str) -> None:
    job = sync(engine, emulator.schema, "Mixed Case", transport=transport)
    assert job["status"] == "completed"
    with engine.store.connect() as con:
        names = [n for n, _ in engine.store.storage.table_columns(con, emulator.schema, "Mixed Case")]
    assert 'Weird "col"' in names


def test_resync_replaces_rather_than_appends(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    sync(engine, emulator.schema, "ORDERS")
    first = read_table(engine, emulator.schema, "ORDERS", "ORDER_ID")
    job = sync(engine, emulator.schema, "ORDERS", force=True)
    assert read_table(engine, emulator.schema, "ORDERS", "ORDER_ID") == first
    assert job["transport"] == "stage"  # auto prefers the spec's stage method
    history = engine.store.history(emulator.schema, "ORDERS")
    assert [j["status"] for j in history] == ["completed", "completed"]


def test_unchanged_table_is_skipped_unless_forced(engine: SyncEngine, emulator: EmulatorSettings, sf,
                                                  source_table) -> None:
    schema = emulator.schema
    table = source_table("ID NUMBER(38,0), NAME VARCHAR", "SKIP")
    sf.cursor().execute(f'INSERT INTO "{schema}"."{table}" VALUES (1, \'a\'), (2, \'b\')')
    assert sync(engine, schema, table)["stats"]["skipped"] is False
    skipped = sync(engine, schema, table)
    assert skipped["status"] == "skipped" and skipped["transport"] == "none"
    assert skipped["stats"]["skipped"] is True and skipped["stats"]["rows_processed"] == 0
    status = engine.store.sync_status(schema, table)
    assert status["last_status"] == "skipped" and status["last_success_sync_id"] == skipped["sync_id"]
    assert sync(engine, schema, table)["status"] == "skipped"  # a skip is a success: the next one skips too
    assert "unload_s" not in skipped["stats"] and "query_s" not in skipped["stats"]
    sf.cursor().execute(f'UPDATE "{schema}"."{table}" SET NAME = \'c\' WHERE ID = 1')  # same row count
    changed = sync(engine, schema, table)
    assert changed["stats"]["skipped"] is False and changed["status"] == "completed"
    assert read_table(engine, schema, table, "ID") == [(1, "c"), (2, "b")]
    assert sync(engine, schema, table, force=True)["stats"]["skipped"] is False


def test_register_is_idempotent_and_unregister_keeps_history_and_data(engine: SyncEngine,
                                                                      emulator: EmulatorSettings) -> None:
    first = engine.register(emulator.schema, "ORDERS")
    assert first.as_dict()["status"] == "active" and first.primary_key == ("ORDER_ID",)
    again = engine.register(emulator.schema, "ORDERS")
    assert again.table_id == first.table_id
    engine.sync(SyncRequest(emulator.schema, "ORDERS"))
    gone = engine.unregister(emulator.schema, "ORDERS")
    assert gone.status == "inactive"
    assert len(engine.store.history(emulator.schema, "ORDERS")) == 1
    assert (DEMO_SCHEMA, "ORDERS") in engine.store.synced_tables()
    with pytest.raises(NotRegisteredError):
        engine.sync(SyncRequest(emulator.schema, "ORDERS"))


def _metadata_snapshot(engine: SyncEngine) -> list:
    with engine.store.metadata.read() as conn:
        return [conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (allowed_tables, sync_jobs, table_sync_status)]


@pytest.mark.parametrize(
    ("schema", "table", "error"),
    [
        (DEMO_SCHEMA, "NO_SUCH_TABLE", TableNotFoundError),
        (DEMO_SCHEMA, "orders", TableNotFoundError),  # names are case-sensitive
        ("NO_SUCH_SCHEMA", "data", TableNotFoundError),
        (DEMO_SCHEMA, 'data"; DROP TABLE "ORDERS"; --', TableNotFoundError),
        (DEMO_SCHEMA, "data\x00", InvalidIdentifierError),
        (DEMO_SCHEMA, "", InvalidIdentifierError),
        (DEMO_SCHEMA, "x" * 300, InvalidIdentifierError),
    ],
)
def test_bad_names_are_refused_and_change_nothing(engine: SyncEngine, sf, schema: str, table: str,
                                                  error: type[Exception]) -> None:
    before = _metadata_snapshot(engine)
    with pytest.raises(error) as info:
        engine.register(schema, table)
    assert str(info.value)
    assert _metadata_snapshot(engine) == before
    assert sf.cursor().execute(f'SELECT COUNT(*) FROM {DEMO_SCHEMA}."ORDERS"').fetchone()[0] > 0


def test_second_sync_of_the_same_table_is_refused(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    engine.register(emulator.schema, "ORDERS")
    first = engine.prepare(SyncRequest(emulator.schema, "ORDERS"))
    with pytest.raises(SyncAlreadyRunningError, match="already running"):
        engine.prepare(SyncRequest(emulator.schema, "ORDERS"))
    assert first.run()["status"] == "completed"
    assert engine.sync(SyncRequest(emulator.schema, "ORDERS"))["status"] == "skipped"  # ran again (nothing had changed)


def test_unknown_transport_and_strategy_are_refused_before_any_job(engine: SyncEngine,
                                                                   emulator: EmulatorSettings) -> None:
    engine.register(emulator.schema, "ORDERS")
    for request in (SyncRequest(emulator.schema, "ORDERS", transport="ftp"),
                    SyncRequest(emulator.schema, "ORDERS", strategy="sometimes")):
        with pytest.raises(Exception, match="Unknown"):
            engine.prepare(request)
    assert engine.store.history(emulator.schema, "ORDERS") == []


def test_duckdb_file_is_not_held_open_while_idle(engine: SyncEngine, emulator: EmulatorSettings,
                                                 settings) -> None:
    sync(engine, emulator.schema, "ORDERS")
    # another connection with a different configuration can only open the file if nobody holds it
    con = read_only(settings)
    assert con.execute(f'SELECT count(*) FROM "{emulator.schema}"."ORDERS"').fetchone()[0] > 0
    con.close()


def test_auto_falls_back_to_arrow_when_the_account_forbids_unloads(engine: SyncEngine, emulator: EmulatorSettings,
                                                                   sf) -> None:
    sync(engine, emulator.schema, "ORDERS")
    sf.cursor().execute("ALTER ACCOUNT SET PREVENT_UNLOAD_TO_INTERNAL_STAGES = TRUE")
    try:
        job = engine.sync(SyncRequest(emulator.schema, "ORDERS", transport="auto", force=True))
        assert job["status"] == "completed" and job["transport"] == "arrow"
        assert "PREVENT_UNLOAD_TO_INTERNAL_STAGES" in job["stats"]["fallback_reason"]
        assert job["stats"]["stage_dropped"] is True
        with pytest.raises(SourceError, match="PREVENT_UNLOAD_TO_INTERNAL_STAGES"):
            engine.sync(SyncRequest(emulator.schema, "ORDERS", transport="stage", force=True))
    finally:
        sf.cursor().execute("ALTER ACCOUNT UNSET PREVENT_UNLOAD_TO_INTERNAL_STAGES")
    assert engine.store.history(emulator.schema, "ORDERS")[0]["status"] == "failed"
    assert engine.sync(SyncRequest(emulator.schema, "ORDERS", transport="stage"))["transport"] == "stage"
    # (not skipped: the last attempt failed, so the next one does the work)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_view_syncs_and_is_never_skipped(engine: SyncEngine, emulator: EmulatorSettings, sf, source_table,
                                           transport: str) -> None:
    schema = emulator.schema
    table = source_table("ID NUMBER(38,0), AMOUNT NUMBER(10,2)", "BASE")
    view = f"V_{table}"
    cur = sf.cursor()
    cur.execute(f'INSERT INTO "{schema}"."{table}" VALUES (1, 1.50), (2, 2.50)')
    cur.execute(f'CREATE VIEW "{schema}"."{view}" AS SELECT ID, AMOUNT * 2 AS DOUBLED FROM "{schema}"."{table}"')
    try:
        assert engine.register(schema, view).primary_key == ()
        first = engine.sync(SyncRequest(schema, view, transport=transport))
        assert first["stats"]["rows_processed"] == 2
        cur.execute(f'UPDATE "{schema}"."{table}" SET AMOUNT = 10 WHERE ID = 1')
        second = engine.sync(SyncRequest(schema, view, transport=transport))
        assert second["stats"]["skipped"] is False
        assert read_table(engine, schema, view, "ID") == [(1, Decimal("20.00")), (2, Decimal("5.00"))]
    finally:
        cur.execute(f'DROP VIEW IF EXISTS "{schema}"."{view}"')


def test_tables_differing_only_in_case_are_refused_not_overwritten(engine: SyncEngine, sf, source_table,
                                                                   emulator: EmulatorSettings) -> None:
    """Issue 9 item 4: Snowflake's "Case_x" and CASE_X are two tables, DuckDB's are one. The emulator
    (DuckDB inside) cannot hold both at once, so the second appears after the first is dropped."""
    schema = emulator.schema
    upper = source_table("ID NUMBER(38,0)", "CASE")
    sf.cursor().execute(f'INSERT INTO "{schema}"."{upper}" SELECT SEQ4() FROM TABLE(GENERATOR(ROWCOUNT => 1000))')
    engine.register(schema, upper)
    sync(engine, schema, upper)
    mixed = upper[0] + upper[1:].lower()
    sf.cursor().execute(f'DROP TABLE "{schema}"."{upper}"')
    sf.cursor().execute(f'CREATE TABLE "{schema}"."{mixed}" (ID NUMBER(38,0))')
    try:
        with pytest.raises(NameCollisionError, match=f"registered {schema}.{upper} differ only in case"):
            engine.register(schema, mixed)
        assert engine.store.get_registration(schema, mixed) is None
        with engine.store.connect() as con:
            assert engine.store.storage.count_rows(con, schema, upper) == 1000
    finally:
        sf.cursor().execute(f'DROP TABLE IF EXISTS "{schema}"."{mixed}"')



@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A small tmpfs of its own (root only); without the right to mount, the test is skipped."""
    import subprocess

    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_full_disk_says_so_and_leaves_the_table_as_it_was(settings, emulator: EmulatorSettings, tiny_disk: Path,
                                                            transport: str) -> None:
    """Issue 9 item 7: the job's error is the full disk and where, not "cannot rollback"."""
    lake = settings.target and dataclasses.replace(settings.target, data_path=f"{tiny_disk / 'lake'}/")
    engine = SyncEngine(dataclasses.replace(settings, duckdb_path=tiny_disk / "sfduck.duckdb", target=lake))
    schema = emulator.schema
    sync(engine, schema, "ORDERS", transport=transport)

    def fill_the_disk(progress) -> None:
        if progress.phase == "loading" and not (tiny_disk / "filler").exists():
            with open(tiny_disk / "filler", "wb") as filler, contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * (64 << 10))
                    filler.flush()

    engine.register(schema, "data")
    with pytest.raises(SyncFailedError, match=f"No space left on the device holding {tiny_disk}.*free at {tiny_disk}"):
        engine.sync(SyncRequest(schema, "data", transport=transport), fill_the_disk)
    (tiny_disk / "filler").unlink()
    engine.store.reap_dead_jobs()
    job = engine.store.history(schema, "data")[0]
    assert job["status"] == "failed" and "No space left on the device holding" in job["error_message"]
    assert "rollback" not in job["error_message"].lower()
    with engine.store.connect() as con:
        assert engine.store.storage.count_rows(con, schema, "ORDERS") == ORDER_ROWS
        assert not engine.store.storage.table_exists(con, schema, "data")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_full_disk_is_what_the_job_records_after_the_process_ended(emulator: EmulatorSettings, tiny_disk: Path,
                                                                     target_kind: str, transport: str) -> None:
    """Issue 18 item 12: a process whose failure could not be written (the disk was full) and that
    then ended left its job to be reaped as "process stopped"; the job says the disk was full."""
    env = env_for(emulator, tiny_disk, target_kind)
    schema = emulator.schema
    assert cli(env, "register", schema, "data").returncode == 0
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "sync_filling_disk.py"), schema,
                          "data", transport, str(tiny_disk / "filler")], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1 and f"No space left on the device holding {tiny_disk}" in run.stdout, (
        run.stdout, run.stderr[-2000:])
    (tiny_disk / "filler").unlink()
    [job] = json.loads(cli(env, "history", schema, "data").stdout)  # another process, which reaps the job
    assert job["status"] == "failed", job
    assert job["error_message"].startswith(f"No space left on the device holding {tiny_disk}"), job
    assert "stopped" not in job["error_message"], job


def test_a_sync_that_cannot_fit_is_refused_before_anything_moves(engine: SyncEngine, emulator: EmulatorSettings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil as shutil_module

    schema = emulator.schema
    engine.register(schema, "data")
    real = shutil_module.disk_usage
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(SyncFailedError, match=r"Not enough free disk space.*only 1000 B is free"):
        engine.sync(SyncRequest(schema, "data"))
    job = engine.store.history(schema, "data")[0]
    assert job["stats"].get("transport") is None and job["stats"].get("unload_s") is None  # nothing moved


def test_download_folders_left_by_killed_syncs_are_removed(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    stale = engine.settings.data_dir / "tmp" / "0f0f0f0f-dead-sync"
    stale.mkdir(parents=True)
    (stale / "data_0_0_0.snappy.parquet").write_bytes(b"x" * 1000)
    engine.register(emulator.schema, "ORDERS")
    engine.sync(SyncRequest(emulator.schema, "ORDERS"))
    assert not stale.exists()
