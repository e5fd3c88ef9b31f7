"""Previews of synced tables and the sandboxed read-only SQL box."""

from __future__ import annotations

import io
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from sfduck_core import display, preview
from sfduck_core.errors import SfduckError, StoreBusyError
from sfduck_core.preview import (
    QueryRefusedError,
    QueryTimeoutError,
    check_read_only_query,
    first_rows,
    row_count,
    run_read_only_query,
    summarize,
    to_csv_bytes,
    to_parquet_bytes,
)
from sfduck_core.store import Store

SCHEMA, TABLE = "WORKSPACE_1", "Orders"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sfduck.duckdb"
    store = Store(path, lock_timeout_s=2)
    with store.connect() as con:
        con.execute(f'CREATE SCHEMA "{SCHEMA}"')
        con.execute(f'CREATE TABLE "{SCHEMA}"."{TABLE}" AS SELECT range AS id, range % 7 AS bucket, '
                    "'row ' || range AS label FROM range(2500)")
    return path


def tables_in(path: Path) -> list[tuple[str, str]]:
    return Store(path).synced_tables()


def test_fixed_previews(db: Path) -> None:
    store = Store(db)
    rows = first_rows(store, SCHEMA, TABLE, limit=5)
    assert rows.column_names == ["id", "bucket", "label"] and rows.num_rows == 5
    assert row_count(store, SCHEMA, TABLE) == 2500
    summary = summarize(store, SCHEMA, TABLE).to_pandas()
    assert set(summary["column_name"]) == {"id", "bucket", "label"}
    assert summary.set_index("column_name").loc["bucket", "max"] == "6"


def test_first_rows_mark_json_and_summarize_a_time_ns_column(db: Path) -> None:
    """A synced TIME(9) is a TIME_NS, which DuckDB's SUMMARIZE cannot average: its exact min and max."""
    store = Store(db)
    with store.connect() as con:
        con.execute(f'CREATE TABLE "{SCHEMA}"."T" AS SELECT TIME_NS \'12:00:00.123456789\' AS "t m", '
                    "'{\"a\":1}'::JSON AS js, 1 AS n UNION ALL SELECT TIME_NS '08:00:00', NULL, 2")
    assert display.exact_table(first_rows(store, SCHEMA, "T")).column("js").to_pylist() == ['{"a": 1}', None]
    summary = summarize(store, SCHEMA, "T").to_pandas().set_index("column_name")
    assert (summary.loc["t m", "column_type"], summary.loc["t m", "min"], summary.loc["t m", "max"]) == (
        "TIME_NS", "08:00:00", "12:00:00.123456789")
    assert summary.loc["n", "avg"] == "1.5"


def test_summarize_a_double_whose_spread_overflows_and_a_blob(db: Path) -> None:
    """DuckDB's SUMMARIZE refuses a whole table when one DOUBLE's standard deviation is out of range
    (the demo's ALL_TYPES): every column is still summarized, that one without `std`, the others as
    SUMMARIZE has them; a BLOB's min and max are hex."""
    store = Store(db)
    with store.connect() as con:
        con.execute(f'CREATE TABLE "{SCHEMA}"."W" AS SELECT * FROM (VALUES '
                    "(1.7976931348623157e308::DOUBLE, 1.5::DOUBLE, '\\x00\\xFF'::BLOB), "
                    "(-1e308, 2.5, 'hello'::BLOB), (0.1, NULL, NULL)) v(\"big x\", small, bin)")
        with pytest.raises(duckdb.OutOfRangeException):
            con.execute(f'SUMMARIZE "{SCHEMA}"."W"')
        plain = con.execute(f'SUMMARIZE SELECT small FROM "{SCHEMA}"."W"').fetchall()
    rows = summarize(store, SCHEMA, "W").to_pylist()
    assert [r["column_name"] for r in rows] == ["big x", "small", "bin"]
    big, small, binary = rows
    assert (big["column_type"], big["min"], big["max"], big["count"]) == (
        "DOUBLE", "-1e+308", "1.7976931348623157e+308", 3)
    assert big["std"] is None and big["q50"] is not None and big["null_percentage"] == 0
    assert tuple(small.values()) == plain[0]  # the other columns: SUMMARIZE's own rows
    assert (binary["column_type"], binary["min"], binary["max"]) == ("BLOB", "0x00FF", "0x68656C6C6F")


def test_preview_of_a_table_never_synced_says_what_to_do(db: Path) -> None:
    with pytest.raises(SfduckError, match="has not been synced.*run a sync"):
        first_rows(Store(db), SCHEMA, "NOPE")


def test_query_returns_rows_bounded(db: Path) -> None:
    result = run_read_only_query(db, f'SELECT * FROM "{SCHEMA}"."{TABLE}" ORDER BY id', max_rows=1500)
    assert result.table.num_rows == 1500 and result.truncated
    assert result.table.column("id").to_pylist()[:3] == [0, 1, 2]
    small = run_read_only_query(db, f'SELECT count(*) AS n FROM "{SCHEMA}"."{TABLE}";')
    assert small.to_pandas()["n"].tolist() == [2500] and not small.truncated


def test_summarize_and_describe_are_allowed(db: Path) -> None:
    result = run_read_only_query(db, f'SUMMARIZE "{SCHEMA}"."{TABLE}"')
    assert result.table.num_rows == 3


@pytest.mark.parametrize("sql, message", [
    ("CREATE TABLE x AS SELECT 1", "read-only: CREATE"),
    (f'INSERT INTO "{SCHEMA}"."{TABLE}" VALUES (1, 1, \'x\')', "read-only: INSERT"),
    (f'DROP TABLE "{SCHEMA}"."{TABLE}"', "read-only: DROP"),
    (f"COPY \"{SCHEMA}\".\"{TABLE}\" TO '/tmp/sfduck_leak.csv'", "read-only: COPY"),
    ("ATTACH '/tmp/other.duckdb' AS other", "read-only: ATTACH"),
    ("SELECT 1; DROP TABLE x", "exactly one statement; found 2"),
    ("", "Type a query first"),
    ("SELEC 1 FROM", "could not be parsed"),
])
def test_courtesy_check_explains_refusals(sql: str, message: str) -> None:
    with pytest.raises(QueryRefusedError, match=message):
        check_read_only_query(sql)


@pytest.mark.parametrize("sql, message", [
    ("CREATE TABLE main.x AS SELECT 1", "read-only"),
    (f'INSERT INTO "{SCHEMA}"."{TABLE}" VALUES (1, 1, \'x\')', "read-only"),
    (f'DROP TABLE "{SCHEMA}"."{TABLE}"', "read-only"),
    ("COPY (SELECT 1) TO '/tmp/sfduck_leak.csv'", "cannot read or write files"),
    ("ATTACH '/tmp/sfduck_other.duckdb' AS other", "cannot read or write files"),
    ("SET enable_external_access = true", "cannot change DuckDB settings"),
])
def test_sandbox_refuses_writes_even_without_the_courtesy_check(
        db: Path, monkeypatch: pytest.MonkeyPatch, sql: str, message: str) -> None:
    monkeypatch.setattr(preview, "check_read_only_query", lambda text: text)
    with pytest.raises(QueryRefusedError, match=message):
        run_read_only_query(db, sql)
    assert tables_in(db) == [(SCHEMA, TABLE)]
    assert row_count(Store(db), SCHEMA, TABLE) == 2500
    assert not Path("/tmp/sfduck_leak.csv").exists()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
])
def test_local_files_and_network_are_unreachable(db: Path, sql: str) -> None:
    check_read_only_query(sql)  # a SELECT passes the courtesy check: the sandbox must refuse it
    with pytest.raises(QueryRefusedError, match="reads only the synced tables: the table function"):
        run_read_only_query(db, sql)


def test_long_query_is_killed_at_the_timeout(db: Path) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="stopped after 2 s"):
        run_read_only_query(db, "SELECT sum(hash(a.range * b.range)) FROM range(100000000) a, range(1000) b",
                            timeout_s=2)
    assert time.monotonic() - started < 30  # the query itself would run for many minutes


def test_busy_file_is_reported_plainly(db: Path) -> None:
    holder = duckdb.connect(str(db))  # like a sync loading data in the dashboard process
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="busy: a sync is loading data"):
            run_read_only_query(db, "SELECT 1", busy_retry_s=0.5)
        assert time.monotonic() - started < 8
    finally:
        holder.close()
    assert run_read_only_query(db, "SELECT 42 AS x").to_pandas()["x"].tolist() == [42]


def test_missing_database_file(tmp_path: Path) -> None:
    with pytest.raises(SfduckError, match=f"No database at {tmp_path / 'none.duckdb'}: run a sync first"):
        run_read_only_query(tmp_path / "none.duckdb", "SELECT 1")


def test_downloads_round_trip(db: Path) -> None:
    result = run_read_only_query(db, f'SELECT id, label FROM "{SCHEMA}"."{TABLE}" ORDER BY id LIMIT 3')
    assert to_csv_bytes(result.table).decode().splitlines() == ["id,label", "0,row 0", "1,row 1", "2,row 2"]
    back = pq.read_table(io.BytesIO(to_parquet_bytes(result.table)))
    assert back.equals(result.table)
