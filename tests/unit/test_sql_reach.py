"""The SQL box reaches the synced tables and DuckDB's built-in functions, nothing else: on a DuckDB
file and on a lake with a SQLite catalog (the PostgreSQL catalog: tests/integration/test_sql_reach_pg.py).
Every attempt below is refused with a message that says why, while ordinary analytics still run."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sfduck_core import sql_policy, sql_sandbox
from sfduck_core.config import Target, parse_target
from sfduck_core.preview import QueryRefusedError, run_read_only_query
from sfduck_core.storage import lake_setup_sql
from sfduck_core.store import Store

ROOT = Path(__file__).resolve().parents[2]
ANALYTICS = [
    ('SELECT t.b, count(*) AS n, sum(u.id) AS s FROM "S"."T" t JOIN "S"."U" u ON t.id = u.id GROUP BY ALL '
     "ORDER BY 1", 7),
    ('WITH x AS (SELECT b, row_number() OVER (PARTITION BY b ORDER BY id DESC) AS rn, lag(id) OVER (ORDER BY id) '
     'AS l FROM "S"."T") SELECT * FROM x WHERE rn = 1 ORDER BY b', 7),
    ('SELECT b, sum(id) FILTER (WHERE id > 3), quantile_cont(id, 0.5), string_agg(id::VARCHAR, \',\') '
     'FROM "s"."t" GROUP BY b QUALIFY row_number() OVER (ORDER BY b) < 3', 2),
    ("SELECT upper(name), strftime(now(), '%Y'), list_transform([1, 2], x -> x * 2), regexp_matches(name, '1'), "
     'unnest([1, 2]), coalesce(NULL, 1), name ILIKE \'%1%\' FROM "S"."U" LIMIT 2', 2),
    ('SELECT * FROM "S"."U" WHERE id IN (SELECT id FROM "S"."T" WHERE b = 3) UNION ALL SELECT 99, \'x\'', 2),
    ("SELECT * FROM range(3), generate_series(1, 2)", 6),
    ('DESCRIBE "S"."T"', 2),
    ('SUMMARIZE "S"."T"', 2),
    ("SELECT current_database() IS NOT NULL, version(), pg_typeof(1), format_bytes(1024)", 1),
]
# The reports and the tricks a second look would try: each must be refused.
ATTEMPTS = [
    ("SELECT * FROM duckdb_databases()", "table function duckdb_databases"),
    ("FROM duckdb_databases", "Only the synced tables"),
    ('/* x */ SeLeCt * FrOm "DUCKDB_DATABASES"()', "table function duckdb_databases"),
    ("SELECT * FROM duckdb_settings()", "table function duckdb_settings"),
    ("SELECT * FROM duckdb_secrets()", "table function duckdb_secrets"),
    ("SELECT * FROM which_secret('s3://bucket/x', 's3')", "table function which_secret"),
    ("SELECT current_setting('temp_directory')", "current_setting\\(\\): it reports the server's settings"),
    ('SELECT "Current_Setting"(\'threads\')', "current_setting"),
    ("SELECT getenv('HOME')", "getenv\\(\\) is not one of them"),
    ("SELECT getvariable('x')", "getvariable"),
    ("SELECT * FROM read_text('/etc/hostname')", "table function read_text"),
    ("SELECT * FROM read_blob('/etc/hostname')", "table function read_blob"),
    ("SELECT * FROM glob('/etc/*')", "table function glob"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "table function sniff_csv"),
    ("SELECT * FROM '/etc/hostname'", "Only the synced tables"),
    ("SELECT * FROM query('SELECT * FROM duckdb_databases()')", "table function query"),
    ("SELECT * FROM query_table('duckdb_settings')", "table function query_table"),
    ("SELECT * FROM pragma_database_list", "Only the synced tables"),
    ("SELECT * FROM pragma_show('x')", "table function pragma_show"),
    ("SELECT * FROM pragma_version()", "table function pragma_version"),
    ("SELECT * FROM information_schema.tables", "Only the synced tables"),
    ("SELECT * FROM system.main.duckdb_databases", "Only the synced tables"),
    ("SELECT * FROM pg_catalog.pg_class", "Only the synced tables"),
    ("SELECT pg_catalog.pg_get_viewdef(1)", "pg_get_viewdef"),
    ("SELECT * FROM sfduck_meta.sync_jobs", "Only the synced tables"),
    ("WITH duckdb_databases AS (SELECT 1) SELECT * FROM duckdb_databases", "rename the CTE"),
    ("WITH c AS (SELECT * FROM duckdb_settings()) SELECT * FROM c", "table function duckdb_settings"),
    ('SELECT * FROM "S"."T" WHERE id IN (SELECT length(content) FROM read_blob(\'/etc/hostname\'))',
     "table function read_blob"),
    ('SELECT list_transform([1], x -> current_setting(\'threads\')) FROM "S"."T"', "current_setting"),
    ('SELECT * FROM "S"."T" AT (VERSION => (SELECT count(*) FROM duckdb_settings()))', "duckdb_settings"),
    ("SELECT * FROM sqlite_scan('{other}', 'secrets')", "table function sqlite_scan"),
    ("SELECT * FROM sqlite_query('{other}', 'SELECT 1')", "table function sqlite_query"),
    ("SELECT * FROM sqlite_attach('{other}')", "table function sqlite_attach"),
    ("SELECT * FROM postgres_scan('dbname=postgres', 'public', 't')", "table function postgres_scan"),
    ("SELECT * FROM postgres_query('sfduck_lake', 'SELECT pg_read_file(''/etc/passwd'')')",
     "table function postgres_query"),
    ("SELECT * FROM ducklake_snapshots('sfduck_lake')", "table function ducklake_snapshots"),
    ("SELECT * FROM sfduck_lake.snapshots()", "table function sfduck_lake.snapshots"),
    ("SELECT ducklake_merge_adjacent_files('sfduck_lake')", "ducklake_merge_adjacent_files\\(\\) is not one of"),
    ("SELECT * FROM ducklake_expire_snapshots('sfduck_lake', dry_run => true)", "ducklake_expire_snapshots"),
    ("SELECT * FROM __ducklake_metadata_sfduck_lake.main.ducklake_snapshot", "Only the synced tables"),
    ("SELECT * FROM memory.main.x", "Only the synced tables"),
    ("SHOW DATABASES", "no database listing"),
    ("SHOW ALL TABLES", "no database listing"),
    ("SUMMARIZE SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("DESCRIBE duckdb_databases", "Only the synced tables"),
    ("SELECT nextval('seq')", "nextval"),
    ("SELECT * FROM test_all_types()", "table function test_all_types"),
]


def make_tables(con: Any) -> None:
    con.execute('CREATE SCHEMA "S"')
    con.execute('CREATE TABLE "S"."T" AS SELECT range AS id, range % 7 AS b FROM range(100)')
    con.execute('CREATE TABLE "S"."U" AS SELECT range AS id, range::VARCHAR AS name FROM range(10)')


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module: the targets are made once and only read."""
    return tmp_path_factory.mktemp("reach")


@pytest.fixture(scope="module", params=["file", "sqlite lake"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    other = tmp_path / "other.sqlite"  # another instance's auth.sqlite, say
    other.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(other)) as db, db:
        db.execute("CREATE TABLE secrets (value TEXT)")
        db.execute("INSERT INTO secrets VALUES ('password hash')")
    if request.param == "file":
        path = tmp_path / "sfduck.duckdb"
        with duckdb.connect(str(path)) as con:
            make_tables(con)
            con.execute("CREATE SCHEMA sfduck_meta")
            con.execute("CREATE TABLE sfduck_meta.sync_jobs AS SELECT 1 AS x")
        return path
    lake = parse_target(f"ducklake:sqlite:{tmp_path / 'c.sqlite'}", str(tmp_path / "d"), Path)
    with Store(tmp_path / "unused.duckdb", target=lake).connect() as con:
        make_tables(con)
    return lake


@pytest.fixture(scope="module")
def sandboxed(target: Any, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection the SQL box's child opens, in this process: the policy is checked on it."""
    workdir = tmp_path / f"work-{isinstance(target, Target)}"
    workdir.mkdir()
    request: dict[str, Any] = {"workdir": str(workdir), "memory_limit": "256MB", "max_temp_size": "1GB",
                               "busy_retry_s": 1.0}
    if isinstance(target, Target):
        request.update(lake_setup=lake_setup_sql(target, read_only=True), lake_data_path=target.data_path)
    else:
        request["path"] = str(target)
    con = sql_sandbox.open_sandboxed(request)
    yield con
    con.close()


def checked(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """What the child does before it runs a query."""
    sql_sandbox.check_one_select(con, sql)
    sql_sandbox.check_reach(con, sql, sql_policy.builtin_functions())


@pytest.mark.parametrize("sql, rows", ANALYTICS)
def test_ordinary_analytics_pass_the_check_and_run(sandboxed: duckdb.DuckDBPyConnection, sql: str,
                                                   rows: int) -> None:
    checked(sandboxed, sql)
    assert len(sandboxed.sql(sql).fetchall()) == rows


@pytest.mark.parametrize("sql, says", ATTEMPTS)
def test_everything_but_the_synced_tables_is_refused(sandboxed: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                     sql: str, says: str) -> None:
    with pytest.raises(sql_sandbox.Refusal, match=says) as exc:
        checked(sandboxed, sql.format(other=tmp_path / "other.sqlite"))
    assert exc.value.kind == "refused" and "\n" not in exc.value.message


def test_the_sql_box_applies_the_check(target: Any, tmp_path: Path) -> None:
    """End to end through the child process: refused with the check's message, analytics run."""
    for sql, says in [ATTEMPTS[0], ATTEMPTS[6], ("SELECT * FROM sqlite_scan('{other}', 'secrets')", "sqlite_scan")]:
        with pytest.raises(QueryRefusedError, match=says) as exc:
            run_read_only_query(target, sql.format(other=tmp_path / "other.sqlite"))
        assert "password hash" not in str(exc.value)
    sql, rows = ANALYTICS[1]
    assert run_read_only_query(target, sql).table.num_rows == rows


def test_whether_a_file_exists_cannot_be_told(sandboxed: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    answers = set()
    for path in (tmp_path / "other.sqlite", tmp_path / "missing.sqlite"):
        with pytest.raises(sql_sandbox.Refusal) as exc:
            checked(sandboxed, f"SELECT count(*) FROM sqlite_scan('{path}', 'secrets')")
        answers.add(exc.value.message)
    assert len(answers) == 1


def test_a_lake_is_read_as_of_an_earlier_version(tmp_path: Path) -> None:
    lake = parse_target(f"ducklake:sqlite:{tmp_path / 'v' / 'c.sqlite'}", str(tmp_path / "v" / "d"), Path)
    store = Store(tmp_path / "v" / "unused.duckdb", target=lake)
    with store.connect() as con:
        make_tables(con)
        version = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('sfduck_lake')").fetchone()[0]
        con.execute('INSERT INTO "S"."T" SELECT range, 0 FROM range(100, 150)')
    at = run_read_only_query(lake, f'SELECT count(*) AS n FROM "S"."T" AT (VERSION => {version})')
    now = run_read_only_query(lake, 'SELECT count(*) AS n FROM "S"."T"')
    assert at.table.column("n").to_pylist() == [100] and now.table.column("n").to_pylist() == [150]


def test_the_readme_names_the_functions_an_analyst_has() -> None:
    """The Security section lists the table functions and the built-ins held back, as the code does."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    security = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"<!-- ([\w-]+) -->(.*?)<!-- /\1 -->", security, re.S))
    table_functions = set(re.findall(r"`(\w+)`", listed["table-functions"]))
    held_back = set(re.findall(r"`(\w+)`", listed["held-back"]))
    functions = sql_policy.builtin_functions()
    assert table_functions == set(sql_policy.SAFE_TABLE_FUNCTIONS)
    assert held_back == {name for _, name in functions.existing - functions.allowed}
    assert held_back >= sql_policy.STATE_FUNCTIONS
