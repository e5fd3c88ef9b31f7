"""Reading the metadata that releases up to 7b69258 kept in the data target (schema sfduck_meta),
from the fixtures that release made (tests/fixtures/legacy/make_fixture.py) and from files built
here at every older schema version."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sfduck_core.config import Target, parse_target
from sfduck_core.metadata.legacy import (
    LAST_LEGACY_VERSION,
    LEGACY_TABLES,
    LegacyMetadata,
    mark_migrated,
    migrated_to,
    read_legacy_metadata,
)
from sfduck_core.sqlident import qualified, quote_literal
from sfduck_core.storage import extension_file, lake_setup_sql
from tests.fixtures.legacy.copies import FIXTURES, expected, legacy_file, legacy_lake, repoint_catalog
from tests.fixtures.legacy.legacy_schema import LEGACY_MIGRATIONS

KINDS = ("file", "lake")


@contextlib.contextmanager
def lake_connection(target: Target, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose default database is the lake, as sfduck's own are."""
    con = duckdb.connect()
    try:
        for sql in lake_setup_sql(target, read_only=read_only):
            con.execute(sql)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def fixture_connection(kind: str, tmp_path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    if kind == "file":
        path = legacy_file(tmp_path)
        with contextlib.closing(duckdb.connect(str(path), read_only=read_only)) as con:
            yield con
    else:
        with lake_connection(legacy_lake(tmp_path), read_only=read_only) as con:
            yield con


def same(want: Any, got: Any) -> bool:
    """The oracle's values are JSON (timestamps as ISO text); ours are Python values."""
    if isinstance(got, dt.datetime):
        return want is not None and dt.datetime.fromisoformat(want) == got
    return want == got


def assert_rows_match(want_rows: list[dict[str, Any]], got_rows: list[dict[str, Any]], key: str) -> None:
    got_by_key = {row[key]: row for row in got_rows}
    assert sorted(got_by_key) == sorted(w[key] for w in want_rows)
    for want in want_rows:
        got = got_by_key[want[key]]
        wrong = {c: (v, got[c]) for c, v in want.items() if c in got and not same(v, got[c])}
        assert not wrong, (want[key], wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_of_the_fixture_reads_as_the_old_release_saw_it(kind: str, tmp_path: Path) -> None:
    with fixture_connection(kind, tmp_path, read_only=True) as con:
        meta = read_legacy_metadata(con)
    oracle = expected(kind)
    assert meta is not None and meta.schema_version == oracle["schema_version"] == LAST_LEGACY_VERSION

    assert_rows_match(oracle["allowed_tables"], meta.allowed_tables, "table_id")
    assert_rows_match(oracle["sync_jobs"], meta.sync_jobs, "sync_id")
    assert_rows_match(oracle["table_sync_status"], meta.table_sync_status, "table_id")
    assert_rows_match(oracle["schedules"], meta.schedules, "table_id")
    assert_rows_match(oracle["data_source"], meta.data_source, "label")
    audit = [{**row, "details": json.loads(row["details"]) if row["details"] else None}
             for row in oracle["audit_log"]]
    assert [(r["changed_at"], r["action"], r["actor"]) for r in sorted(audit, key=lambda r: r["changed_at"])] == [
        (r["changed_at"].isoformat(), r["action"], r["actor"]) for r in meta.audit_log]
    for want, got in zip(sorted(audit, key=lambda r: r["changed_at"]), meta.audit_log, strict=True):
        assert all(same(v, got[c]) for c, v in want.items()), (want, got)


@pytest.mark.parametrize("kind", KINDS)
def test_the_fixture_holds_keys_filters_watermarks_and_every_kind_of_job(kind: str, tmp_path: Path) -> None:
    """The same reading, spelled out: what the upgrade must carry over, value by value."""
    with fixture_connection(kind, tmp_path) as con:
        meta = read_legacy_metadata(con)
    assert meta is not None
    regs = {r["table_name"]: r for r in meta.allowed_tables}
    orders, customers, gone = regs["FIX_ORDERS"], regs["FIX_CUSTOMERS"], regs["FIX_GONE"]
    assert (orders["incremental_key"], orders["primary_key"], orders["detect_deletes"], orders["exclude_columns"],
            orders["include_columns"], orders["status"]) == ("UPDATED_AT", ["ID"], True, ["NOTE"], [], "active")
    assert (customers["include_columns"], customers["exclude_columns"]) == (["ID", "NAME"], [])
    assert gone["status"] == "inactive"

    jobs = meta.sync_jobs
    assert collections.Counter(j["status"] for j in jobs) == {"completed": 4, "skipped": 1, "cancelled": 1,
                                                               "failed": 1}
    assert [j["created_at"] for j in jobs] == sorted(j["created_at"] for j in jobs)
    first, second = [j for j in jobs if j["table_name"] == "FIX_ORDERS"]
    assert first["stats"]["watermark_after"]["value"] == "2024-01-01 00:00:12"
    assert second["stats"]["watermark_before"] == first["stats"]["watermark_after"]
    assert second["stats"]["watermark_after"]["value"] == "2024-02-01 00:00:05"
    assert (second["stats"]["rows_inserted"], second["stats"]["rows_updated"], second["stats"]["rows_deleted"]) == (1, 1, 1)
    assert (second["trigger"], second["started_by"]) == ("schedule", "scheduler")
    filtered = [j for j in jobs if j["filter"]]
    assert [(j["table_name"], j["filter"], j["status"]) for j in filtered] == [("FIX_CUSTOMERS", '"ID" > 1', "completed")]
    cancelled = next(j for j in jobs if j["status"] == "cancelled")
    assert cancelled["cancel_requested"] is True and "Cancelled" in cancelled["error_message"]
    failed = next(j for j in jobs if j["status"] == "failed")
    assert failed["table_name"] == "FIX_GONE" and "does not exist" in failed["error_message"]
    assert all(j["cancel_requested"] is False for j in jobs if j is not cancelled)

    status = {s["table_name"]: s for s in meta.table_sync_status}
    assert status["FIX_ORDERS"]["watermark"] == second["stats"]["watermark_after"]
    assert status["FIX_ORDERS"]["last_success_sync_id"] == second["sync_id"]
    assert [c["name"] for c in status["FIX_ORDERS"]["columns"]] == ["ID", "NAME", "AMOUNT", "UPDATED_AT"]
    assert status["FIX_CUSTOMERS"]["last_status"] == "cancelled"
    assert status["FIX_GONE"]["last_status"] == "failed"

    schedules = {s["table_id"]: s for s in meta.schedules}
    assert (schedules[orders["table_id"]]["cron"], schedules[orders["table_id"]]["timezone"],
            schedules[orders["table_id"]]["enabled"]) == ("0 6 * * 1-5", "Europe/Paris", True)
    assert (schedules[customers["table_id"]]["interval_s"], schedules[customers["table_id"]]["enabled"]) == (3600, False)
    assert [a["action"] for a in meta.audit_log] == ["register", "register", "register", "unregister",
                                                      "schedule.save", "schedule.save", "schedule.pause"]
    assert meta.audit_log[0]["details"]["primary_key"] == ["ID"]
    assert [d["label"] for d in meta.data_source] == ["sfduck_emulator"]
    for rows in meta.tables().values():
        for row in rows:
            assert all(v.tzinfo == dt.UTC for v in row.values() if isinstance(v, dt.datetime)), row


@pytest.mark.parametrize("kind", KINDS)
def test_rows_hold_exactly_the_legacy_columns_in_insert_order(kind: str, tmp_path: Path) -> None:
    with fixture_connection(kind, tmp_path) as con:
        meta = read_legacy_metadata(con)
    assert meta is not None
    assert list(meta.tables()) == list(LEGACY_TABLES)
    for name, rows in meta.tables().items():
        assert rows and all(tuple(row) == LEGACY_TABLES[name] for row in rows), name


def test_timestamps_are_the_same_instants_whatever_the_session_time_zone(tmp_path: Path) -> None:
    path = legacy_file(tmp_path)
    readings = []
    for zone in ("UTC", "America/New_York", "Asia/Kolkata"):
        with contextlib.closing(duckdb.connect(str(path), read_only=True)) as con:
            con.execute(f"SET TimeZone = {quote_literal(zone)}")
            meta = read_legacy_metadata(con)
        assert meta is not None
        readings.append([(j["created_at"], j["created_at"].utcoffset()) for j in meta.sync_jobs])
    assert readings[0] == readings[1] == readings[2]
    assert {offset for _, offset in readings[0]} == {dt.timedelta(0)}


def test_the_lake_fixture_must_be_re_pointed_at_its_new_data_folder(tmp_path: Path) -> None:
    """Why legacy_lake rewrites the catalog: the copy's catalog names the maker's data folder."""
    lake = tmp_path / "lake"
    shutil.copytree(FIXTURES / "lake", lake)
    catalog, data = lake / "catalog.sqlite", lake / "data"
    with contextlib.closing(sqlite3.connect(catalog)) as db:
        made_at = db.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchone()[0]
    assert made_at != f"{data}/" and Path(made_at).is_absolute()

    def attach(options: str) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        for name in ("sqlite_scanner", "ducklake"):
            con.execute(f"LOAD {quote_literal(str(extension_file(name)))}")
        con.execute(f"ATTACH {quote_literal(f'ducklake:sqlite:{catalog}')} AS lake "
                    f"(DATA_PATH {quote_literal(str(data))}{options})")
        return con

    with pytest.raises(duckdb.Error, match="does not match existing data path"):
        attach("")
    target = parse_target(f"ducklake:sqlite:{catalog}", str(data), Path)
    orders = next(s for s in expected("lake")["table_sync_status"] if s["table_name"] == "FIX_ORDERS")
    table = qualified("lake", orders["schema_name"], "FIX_ORDERS")
    with contextlib.closing(attach(", OVERRIDE_DATA_PATH true")) as con:  # one attach, the catalog unchanged
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == orders["row_count"]
    repoint_catalog(catalog, data)
    with lake_connection(target) as con:  # every later attach, as sfduck makes them
        files = con.execute("SELECT data_file FROM ducklake_list_files('sfduck_lake', 'FIX_ORDERS', "
                            "schema => ?)", [orders["schema_name"]]).fetchall()
        assert files and all(f.startswith(f"{data}/") for (f,) in files)
        local = qualified(orders["schema_name"], "FIX_ORDERS")
        assert con.execute(f"SELECT count(*) FROM {local}").fetchone()[0] == orders["row_count"]


def build_at_version(path: Path, version: int,
                     seed: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB file left at legacy schema `version`: only the first `version` migrations applied,
    and `seed`'s rows written at version 1, so the later migrations treat them as an upgrade did."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS sfduck_meta")
    con.execute("CREATE TABLE sfduck_meta.schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    for number, statements in enumerate(LEGACY_MIGRATIONS[:version], start=1):
        for sql in statements:
            con.execute(sql)
        con.execute("INSERT INTO sfduck_meta.schema_version VALUES (?, now())", [number])
        if number == 1 and seed is not None:
            seed(con)
    return con


T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def seed_version_1(con: duckdb.DuckDBPyConnection) -> None:
    """Rows as the version-1 release wrote them; a skip was then `completed` with `skipped: true`."""
    con.execute("INSERT INTO sfduck_meta.allowed_tables VALUES ('t1', 'S', 'T', 'active', 'UPDATED_AT', ['ID'], "
                "true, NULL, ['NOTE'], ?, ?)", [T0, T0])
    for n, (skipped, watermark) in enumerate(((False, "2024-01-01"), (True, "2024-01-01"))):
        stats = {"skipped": skipped, "watermark_after": {"column": "UPDATED_AT", "value": watermark}}
        con.execute("INSERT INTO sfduck_meta.sync_jobs (sync_id, table_id, schema_name, table_name, strategy, "
                    "transport, status, created_at, started_at, completed_at, stats, pid, host, process_started) "
                    "VALUES (?, 't1', 'S', 'T', 'incremental', 'arrow', 'completed', ?, ?, ?, ?, 42, 'h', 1.5)",
                    [f"job{n}", T0 + dt.timedelta(minutes=n), T0, T0, json.dumps(stats)])
    con.execute("INSERT INTO sfduck_meta.table_sync_status (table_id, schema_name, table_name, last_sync_id, "
                "last_status, last_sync_at, last_success_sync_id, last_success_at, row_count, watermark) "
                "VALUES ('t1', 'S', 'T', 'job1', 'completed', ?, 'job1', ?, 3, ?)",
                [T0, T0, json.dumps({"column": "UPDATED_AT", "value": "2024-01-01"})])


@pytest.mark.parametrize("version", range(1, LAST_LEGACY_VERSION + 1))
def test_a_target_left_at_an_older_schema_version_reads_with_defaults(version: int, tmp_path: Path) -> None:
    with contextlib.closing(build_at_version(tmp_path / "old.duckdb", version, seed_version_1)) as con:
        meta = read_legacy_metadata(con)
    assert meta is not None and meta.schema_version == version
    assert [list(r) for r in meta.sync_jobs] == [list(LEGACY_TABLES["sync_jobs"])] * 2
    job0, job1 = meta.sync_jobs
    # columns the version did not have yet read as their migration filled old rows
    assert (job0["cancel_requested"], job0["trigger"], job0["started_by"]) == (False, None, None)
    assert (job0["pid"], job0["host"], job0["process_started"]) == (42, "h", 1.5)
    assert job0["stats"]["watermark_after"]["value"] == "2024-01-01"
    # migration 9 renamed a skip's status; a target left before it reads renamed as well
    assert (job0["status"], job1["status"]) == ("completed", "skipped")
    assert meta.table_sync_status[0]["last_status"] == "skipped"
    assert meta.table_sync_status[0]["watermark"] == {"column": "UPDATED_AT", "value": "2024-01-01"}
    reg = meta.allowed_tables[0]
    assert (reg["primary_key"], reg["include_columns"], reg["exclude_columns"], reg["detect_deletes"]) == (
        ["ID"], [], ["NOTE"], True)
    assert reg["created_at"] == T0
    assert (meta.data_source, meta.audit_log, meta.schedules) == ([], [], [])


def test_the_reader_knows_every_column_the_legacy_migrations_create(tmp_path: Path) -> None:
    with contextlib.closing(build_at_version(tmp_path / "v9.duckdb", LAST_LEGACY_VERSION)) as con:
        tables = {name: tuple(c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'sfduck_meta' AND table_name = ? "
            "ORDER BY column_index", [name]).fetchall()) for name in LEGACY_TABLES}
        created = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() "
                                             "WHERE schema_name = 'sfduck_meta'").fetchall()}
    assert len(LEGACY_MIGRATIONS) == LAST_LEGACY_VERSION
    assert tables == LEGACY_TABLES
    assert created == set(LEGACY_TABLES) | {"schema_version"}


def test_a_target_without_sfduck_meta_has_no_legacy_metadata(tmp_path: Path) -> None:
    with contextlib.closing(duckdb.connect(str(tmp_path / "fresh.duckdb"))) as con:
        con.execute("CREATE TABLE main.t AS SELECT 1 AS x")
        assert read_legacy_metadata(con) is None
        assert migrated_to(con) is None
        con.execute("CREATE SCHEMA sfduck_meta")  # created, but no registration table ever made
        assert read_legacy_metadata(con) is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_marked_target_reads_as_migrated_and_keeps_its_rows(kind: str, tmp_path: Path) -> None:
    with fixture_connection(kind, tmp_path) as con:
        before = read_legacy_metadata(con)
        assert before is not None and migrated_to(con) is None
        mark_migrated(con, "sqlite:///state/sfduck-metadata.sqlite")
        assert read_legacy_metadata(con) is None
        assert migrated_to(con) == "sqlite:///state/sfduck-metadata.sqlite"
        jobs = con.execute("SELECT count(*) FROM sfduck_meta.sync_jobs").fetchone()[0]
    assert jobs == len(before.sync_jobs)


def test_a_marked_file_stays_marked_when_opened_again(tmp_path: Path) -> None:
    path = legacy_file(tmp_path)
    with contextlib.closing(duckdb.connect(str(path))) as con:
        mark_migrated(con, "postgresql+psycopg://sfduck:***@db/sfduck")
    with contextlib.closing(duckdb.connect(str(path), read_only=True)) as con:
        assert read_legacy_metadata(con) is None
        assert migrated_to(con) == "postgresql+psycopg://sfduck:***@db/sfduck"


def test_marking_a_read_only_target_fails_and_changes_nothing(tmp_path: Path) -> None:
    path = legacy_file(tmp_path)
    with contextlib.closing(duckdb.connect(str(path), read_only=True)) as con:
        with pytest.raises(duckdb.Error):
            mark_migrated(con, "anywhere")
        assert isinstance(read_legacy_metadata(con), LegacyMetadata)
