"""Incremental syncs: nothing lost, nothing duplicated, deletes, drift, filters, skips."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SfduckError, UnsafeFilterError
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import env_for, read_only

TRANSPORTS = ["stage", "arrow"]
ROOT = Path(__file__).resolve().parents[2]
DDL = "ID NUMBER(38,0) PRIMARY KEY, NAME VARCHAR, AMOUNT NUMBER(12,2), UPDATED_AT TIMESTAMP_NTZ(6)"


def run_sql(sf, sql: str, params: tuple = ()) -> None:
    sf.cursor().execute(sql, params)


def source_rows(sf, schema: str, table: str) -> list[tuple]:
    return sf.cursor().execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1').fetchall()


def local_rows(engine: SyncEngine, schema: str, table: str, columns: str = "*") -> list[tuple]:
    with engine.store.connect() as con:
        return con.execute(f'SELECT {columns} FROM "{schema}"."{table}" ORDER BY 1').fetchall()


def incremental(engine: SyncEngine, schema: str, table: str, **kwargs: object) -> dict:
    return engine.sync(SyncRequest(schema, table, strategy="incremental", **kwargs))


def seed_orders(sf, schema: str, table: str, n: int = 50) -> None:
    run_sql(sf, f'INSERT INTO "{schema}"."{table}" SELECT SEQ4() + 1, \'name \' || SEQ4(), (SEQ4() * 1.25)::NUMBER(12,2), '
                "DATEADD(second, SEQ4(), '2024-01-01 00:00:00'::TIMESTAMP_NTZ) FROM TABLE(GENERATOR(ROWCOUNT => "
                f"{n}))")


@pytest.fixture
def orders(sf, source_table: Callable[..., str], emulator: EmulatorSettings) -> str:
    table = source_table(DDL, "INC")
    seed_orders(sf, emulator.schema, table)
    return table


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_inserts_and_updates_land_exactly(engine: SyncEngine, sf, emulator: EmulatorSettings, orders: str,
                                          transport: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    first = incremental(engine, schema, orders, transport=transport)
    assert first["stats"]["full_load"] is True and first["stats"]["rows_inserted"] == 50
    assert first["stats"]["watermark_after"]["value"].startswith("2024-01-01 00:00:49")

    run_sql(sf, f'UPDATE "{schema}"."{orders}" SET NAME = \'changed\', UPDATED_AT = \'2024-02-01 00:00:00\' '
                "WHERE ID IN (3, 7)")
    run_sql(sf, f'INSERT INTO "{schema}"."{orders}" VALUES (51, \'new\', 1.50, \'2024-02-01 00:00:01\')')
    job = incremental(engine, schema, orders, transport=transport)
    stats = job["stats"]
    assert (stats["rows_inserted"], stats["rows_updated"], stats["skipped"]) == (1, 2, False)
    assert stats["watermark_before"]["value"].startswith("2024-01-01 00:00:49")
    assert stats["watermark_after"]["value"].startswith("2024-02-01 00:00:01")
    assert local_rows(engine, schema, orders) == source_rows(sf, schema, orders)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_late_row_with_key_equal_to_watermark_is_not_lost(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                          orders: str, transport: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    incremental(engine, schema, orders, transport=transport)
    # committed after our sync, but stamped with exactly the watermark (a long-running transaction)
    run_sql(sf, f'INSERT INTO "{schema}"."{orders}" VALUES (999, \'late\', 9.99, \'2024-01-01 00:00:49\')')
    job = incremental(engine, schema, orders, transport=transport)
    assert job["stats"]["rows_inserted"] == 1
    assert local_rows(engine, schema, orders) == source_rows(sf, schema, orders)


def test_rerun_without_changes_is_skipped_or_changes_nothing(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                             orders: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    incremental(engine, schema, orders)
    before = local_rows(engine, schema, orders)
    skipped = incremental(engine, schema, orders)
    assert skipped["status"] == "skipped" and skipped["transport"] == "none"
    assert engine.store.sync_status(schema, orders)["watermark"] == skipped["stats"]["watermark_after"]
    forced = incremental(engine, schema, orders, force=True)
    assert forced["status"] == "completed" and forced["stats"]["rows_inserted"] == 0
    assert local_rows(engine, schema, orders) == before


def test_without_primary_key_appends_strictly_after_the_watermark(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                                  source_table: Callable[..., str]) -> None:
    schema = emulator.schema
    table = source_table("ID NUMBER(38,0), UPDATED_AT TIMESTAMP_NTZ(6)", "APPEND")
    run_sql(sf, f'INSERT INTO "{schema}"."{table}" VALUES (1, \'2024-01-01\'), (2, \'2024-01-02\')')
    engine.register(schema, table, incremental_key="UPDATED_AT")
    incremental(engine, schema, table)
    run_sql(sf, f'INSERT INTO "{schema}"."{table}" VALUES (3, \'2024-01-03\')')
    job = incremental(engine, schema, table, force=True)
    assert job["stats"]["rows_inserted"] == 1
    incremental(engine, schema, table, force=True)
    assert [r[0] for r in local_rows(engine, schema, table)] == [1, 2, 3]


def test_null_keys_are_counted_and_reported(engine: SyncEngine, sf, emulator: EmulatorSettings, orders: str) -> None:
    schema = emulator.schema
    run_sql(sf, f'INSERT INTO "{schema}"."{orders}" VALUES (500, \'no key\', 1, NULL), (501, \'no key\', 2, NULL)')
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    job = incremental(engine, schema, orders)
    assert job["stats"]["null_key_rows"] == 2
    assert len(local_rows(engine, schema, orders)) == 52  # the first load keeps them


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deletes_are_detected_when_asked(engine: SyncEngine, sf, emulator: EmulatorSettings, orders: str,
                                         transport: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT", detect_deletes=True)
    incremental(engine, schema, orders, transport=transport)
    run_sql(sf, f'DELETE FROM "{schema}"."{orders}" WHERE ID IN (1, 2, 3)')
    job = incremental(engine, schema, orders, transport=transport)
    assert job["stats"]["rows_deleted"] == 3
    assert local_rows(engine, schema, orders) == source_rows(sf, schema, orders)


def test_timestamp_tz_key_in_another_time_zone_loses_nothing(emulator: EmulatorSettings, sf, tmp_path: Path,
                                                             source_table: Callable[..., str], target_kind: str) -> None:
    schema = emulator.schema
    table = source_table("ID NUMBER(38,0) PRIMARY KEY, TS TIMESTAMP_TZ", "TZKEY")
    run_sql(sf, f'INSERT INTO "{schema}"."{table}" VALUES (1, \'2024-01-01 12:00:00+00:00\')')
    env = {**env_for(emulator, tmp_path, target_kind), "TZ": "Asia/Tokyo"}

    def cli(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "sfduck_core", *args], env=env, cwd=ROOT, text=True,
                             capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    cli("register", schema, table, "--incremental-key", "TS")
    cli("sync", schema, table, "--strategy", "incremental", "--quiet")
    # later as an instant, earlier as a wall clock: 10:00 at -08:00 is 18:00 UTC
    run_sql(sf, f'INSERT INTO "{schema}"."{table}" VALUES (2, \'2024-01-01 10:00:00-08:00\')')
    job = cli("sync", schema, table, "--strategy", "incremental", "--quiet", "--force")
    assert job["stats"]["rows_inserted"] == 1
    assert job["stats"]["watermark_after"]["value"].startswith("2024-01-01 18:00:00")


def test_added_and_dropped_columns_are_handled(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                               orders: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    incremental(engine, schema, orders)
    run_sql(sf, f'ALTER TABLE "{schema}"."{orders}" ADD COLUMN REGION VARCHAR')
    run_sql(sf, f'ALTER TABLE "{schema}"."{orders}" DROP COLUMN NAME')
    run_sql(sf, f'INSERT INTO "{schema}"."{orders}" (ID, AMOUNT, UPDATED_AT, REGION) '
                "VALUES (77, 7.00, '2024-03-01', 'EU')")
    job = incremental(engine, schema, orders, force=True)
    drift = job["stats"]["schema_drift"]
    assert drift["columns_added"] == ["REGION"] and drift["columns_dropped_at_source"] == ["NAME"]
    rows = local_rows(engine, schema, orders, 'ID, NAME, REGION, AMOUNT')
    assert rows[-1] == (77, None, "EU", Decimal("7.00"))
    assert rows[0][1] == "name 0"  # the dropped column keeps its old values


def test_incompatible_type_change_fails_and_keeps_the_table(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                            orders: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    incremental(engine, schema, orders)
    before = local_rows(engine, schema, orders)
    run_sql(sf, f'ALTER TABLE "{schema}"."{orders}" DROP COLUMN NAME')
    run_sql(sf, f'ALTER TABLE "{schema}"."{orders}" ADD COLUMN NAME NUMBER(10,0)')
    with pytest.raises(SfduckError, match="run a full sync"):
        incremental(engine, schema, orders, force=True)
    assert local_rows(engine, schema, orders) == before
    full = engine.sync(SyncRequest(schema, orders))
    assert full["status"] == "completed"


HOSTILE_FILTERS = [
    "AMOUNT > 1; DROP TABLE ORDERS",
    "AMOUNT > 1 -- comment",
    "AMOUNT > 1 /* comment */",
    "ID IN (SELECT ID FROM ORDERS)",
    "EXISTS (SELECT 1)",
    "ID = 1 UNION SELECT 1",
    "SYSTEM$WAIT(10) IS NULL",
    "read_csv('/etc/passwd') IS NOT NULL",
    "NO_SUCH_COLUMN = 1",
    "t.ID = 1",
    "NAME = 'abc",
    "(ID = 1",
    "1",
    "",
    "DROP TABLE ORDERS",
    "ID = $x",
    "ID = ?",
    "COUNT(*) > 1",
    "ROW_NUMBER() OVER (ORDER BY ID) = 1",
    "RANDOM() > 0",
]


@pytest.mark.parametrize("hostile", HOSTILE_FILTERS)
def test_hostile_filters_are_refused_and_change_nothing(engine: SyncEngine, emulator: EmulatorSettings,
                                                        hostile: str) -> None:
    schema = emulator.schema
    if engine.store.get_registration(schema, "ORDERS") is None:
        engine.register(schema, "ORDERS")
    before = engine.store.history(schema, "ORDERS")
    with pytest.raises((UnsafeFilterError, SfduckError)) as info:
        engine.prepare(SyncRequest(schema, "ORDERS", where=hostile or " "))
    assert str(info.value)
    assert engine.store.history(schema, "ORDERS") == before


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_safe_filter_is_applied_and_recorded(engine: SyncEngine, sf, emulator: EmulatorSettings, orders: str,
                                               transport: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders)
    job = engine.sync(SyncRequest(schema, orders, where="amount >= 50 and name like 'name %'",
                                  transport=transport))
    assert job["filter"] == '"AMOUNT" >= 50 AND "NAME" LIKE \'name %\''
    expected = [r for r in source_rows(sf, schema, orders) if r[2] >= 50]
    assert local_rows(engine, schema, orders) == expected and expected


def test_column_selection_keeps_only_chosen_columns(engine: SyncEngine, emulator: EmulatorSettings,
                                                    orders: str) -> None:
    schema = emulator.schema
    with pytest.raises(SfduckError, match="cannot be left out"):
        engine.register(schema, orders, incremental_key="UPDATED_AT", exclude_columns=["UPDATED_AT"])
    engine.register(schema, orders, incremental_key="UPDATED_AT", exclude_columns=["NAME"])
    incremental(engine, schema, orders)
    with engine.store.connect() as con:
        assert [c for c, _ in engine.store.storage.table_columns(con, schema, orders)] == ["ID", "AMOUNT", "UPDATED_AT"]


def test_killed_incremental_sync_leaves_the_table_as_it_was(emulator: EmulatorSettings, sf, tmp_path: Path,
                                                            orders: str, target_kind: str) -> None:
    schema = emulator.schema
    env = env_for(emulator, tmp_path, target_kind)
    run = [sys.executable, "-m", "sfduck_core"]
    subprocess.run([*run, "register", schema, orders, "--incremental-key", "UPDATED_AT"], env=env, cwd=ROOT,
                   check=True, capture_output=True)
    subprocess.run([*run, "sync", schema, orders, "--strategy", "incremental", "--quiet"], env=env, cwd=ROOT,
                   check=True, capture_output=True)
    def snapshot() -> list:
        con = read_only(env)
        try:
            return con.execute(f'SELECT * FROM "{schema}"."{orders}" ORDER BY 1').fetchall()
        finally:
            con.close()

    before = snapshot()
    run_sql(sf, f'UPDATE "{schema}"."{orders}" SET NAME = \'x\', UPDATED_AT = \'2025-01-01\' WHERE ID < 10')
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "integration" / "sync_until.py"), schema, orders, "arrow",
                             "swapping", "incremental"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "PAUSED"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert snapshot() == before
    done = subprocess.run([*run, "sync", schema, orders, "--strategy", "incremental", "--quiet"], env=env,
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stats"]["rows_updated"] >= 9
    assert dt.datetime(2025, 1, 1) in [r[3] for r in snapshot()]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_sync_after_inexact_incrementals_is_never_skipped(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                              orders: str, transport: str) -> None:
    """Issue 9 item 0: incrementals without delete detection cannot see deletes, so a later full
    sync must run (not be `skipped`) and reconcile, even though the source did not change since."""
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT")
    engine.sync(SyncRequest(schema, orders, transport=transport))
    run_sql(sf, f'UPDATE "{schema}"."{orders}" SET NAME = \'changed\', UPDATED_AT = \'2024-03-01 00:00:00\' '
                "WHERE ID = 2")
    run_sql(sf, f'INSERT INTO "{schema}"."{orders}" VALUES (60, \'new\', 1.50, \'2024-03-01 00:00:01\')')
    run_sql(sf, f'DELETE FROM "{schema}"."{orders}" WHERE ID BETWEEN 10 AND 19')
    for _ in range(2):
        incremental(engine, schema, orders, transport=transport)
    assert len(local_rows(engine, schema, orders)) == len(source_rows(sf, schema, orders)) + 10  # deletes missed

    full = engine.sync(SyncRequest(schema, orders, transport=transport))
    assert full["stats"]["skipped"] is False
    assert local_rows(engine, schema, orders) == source_rows(sf, schema, orders)
    again = engine.sync(SyncRequest(schema, orders, transport=transport))  # now exact: skipping is right
    assert again["status"] == "skipped"


def test_incremental_with_delete_detection_stays_skippable(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                          orders: str) -> None:
    schema = emulator.schema
    engine.register(schema, orders, incremental_key="UPDATED_AT", primary_key=["ID"], detect_deletes=True)
    incremental(engine, schema, orders)
    run_sql(sf, f'DELETE FROM "{schema}"."{orders}" WHERE ID = 5')
    changed = incremental(engine, schema, orders)
    assert changed["stats"]["rows_deleted"] == 1
    assert local_rows(engine, schema, orders) == source_rows(sf, schema, orders)
    assert engine.sync(SyncRequest(schema, orders))["stats"]["skipped"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_names_and_filters_with_percent_signs_work_incrementally(engine: SyncEngine, sf, source_table,
                                                                 emulator: EmulatorSettings, transport: str) -> None:
    """Issue 9 item 6: bound values must never make the connector %-format the statement."""
    schema = emulator.schema
    table = source_table('ID NUMBER(38,0) PRIMARY KEY, "Discount %" NUMBER(5,2), "Note %s" VARCHAR, '
                         '"Changed %(at)s" TIMESTAMP_NTZ(6)', "PCT%")
    insert = f'INSERT INTO "{schema}"."{table}" VALUES '  # no bound values: the connector leaves % alone
    sf.cursor().execute(insert + "(1, 10.5, '50% off', '2024-01-01 00:00:00'), (2, 0, '%d %s', '2024-01-01 00:00:01')")
    engine.register(schema, table, incremental_key="Changed %(at)s", detect_deletes=True)
    where = "\"Note %s\" LIKE '%\\%%' ESCAPE '\\\\' OR \"Discount %\" >= 0"
    incremental(engine, schema, table, transport=transport, where=where)
    sf.cursor().execute(insert + "(3, 1.25, '100%', '2024-02-01 00:00:00')")
    job = incremental(engine, schema, table, transport=transport, where=where)
    assert job["stats"]["rows_inserted"] == 1
    assert local_rows(engine, schema, table) == source_rows(sf, schema, table)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_changing_the_column_selection_reloads_the_table(engine: SyncEngine, sf, emulator: EmulatorSettings,
                                                         orders: str, transport: str) -> None:
    """Issue 9 item 13: a column excluded later disappears, one included later gets every value."""
    schema = emulator.schema
    assert engine.register(schema, orders, incremental_key="UPDATED_AT").full_sync_required is False
    incremental(engine, schema, orders, transport=transport)

    reg = engine.register(schema, orders, incremental_key="UPDATED_AT", exclude_columns=["NAME"])
    assert reg.full_sync_required is True
    job = incremental(engine, schema, orders, transport=transport)
    assert job["stats"]["full_load"] is True
    with engine.store.connect() as con:
        assert "NAME" not in dict(engine.store.storage.table_columns(con, schema, orders))
    assert local_rows(engine, schema, orders) == [(r[0], *r[2:]) for r in source_rows(sf, schema, orders)]

    engine.register(schema, orders, incremental_key="UPDATED_AT")  # NAME back in
    incremental(engine, schema, orders, transport=transport)
    assert local_rows(engine, schema, orders) == source_rows(sf, schema, orders)
    again = engine.register(schema, orders, incremental_key="UPDATED_AT")
    assert again.full_sync_required is False  # same selection as before: nothing to reload
