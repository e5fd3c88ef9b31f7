"""The SQL box on a lake with a PostgreSQL catalog reaches the synced tables and nothing else: not
the catalog's connection string (with its password), not another database of the server, not a
server-side function through the catalog's connection. Through the real child process, on the
throwaway cluster of pg_cluster.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfduck_core.config import Target, parse_target
from sfduck_core.preview import QueryRefusedError, run_read_only_query
from sfduck_core.store import Store
from tests.integration.pg_cluster import postgres_cluster

PASSWORD = "hunter2-sfduck"  # in the connection string (the cluster trusts loopback, so it is not checked)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Target, str, int]]:
    import psycopg

    with postgres_cluster() as dsn:
        if dsn is None:
            pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
        name = f"lake_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute(f"CREATE DATABASE {name}")
            pg.execute("CREATE DATABASE payroll")
        other = dsn.replace("dbname=postgres", "dbname=payroll")
        with psycopg.connect(other, autocommit=True) as pg:
            pg.execute("CREATE TABLE salaries (who text, amount int)")
            pg.execute("INSERT INTO salaries VALUES ('ceo', 1000000)")
        folder = tmp_path_factory.mktemp("pg-reach")
        target = parse_target(f"ducklake:postgres:{dsn.replace('dbname=postgres', f'dbname={name}')} "
                              f"password={PASSWORD}", str(folder / "data"), Path)
        with Store(folder / "unused.duckdb", target=target).connect() as con:
            con.execute('CREATE SCHEMA "S"')
            con.execute('CREATE TABLE "S"."T" AS SELECT range AS id, range % 7 AS b FROM range(100)')
            version = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('sfduck_lake')").fetchone()[0]
            con.execute('INSERT INTO "S"."T" SELECT range, 0 FROM range(100, 150)')
        yield target, other, version


@pytest.mark.parametrize("sql, says", [
    ("SELECT * FROM duckdb_databases()", "table function duckdb_databases"),
    ("SELECT path FROM duckdb_databases", "Only the synced tables"),
    ("SELECT * FROM postgres_scan('{other}', 'public', 'salaries')", "table function postgres_scan"),
    ("SELECT * FROM postgres_query('__ducklake_metadata_sfduck_lake', 'SELECT pg_read_file(''PG_VERSION'')')",
     "table function postgres_query"),
    ("SELECT * FROM postgres_execute('__ducklake_metadata_sfduck_lake', 'SELECT 1')", "postgres_execute"),
    ("SELECT * FROM postgres_attach('{other}')", "table function postgres_attach"),
    ("SELECT * FROM __ducklake_metadata_sfduck_lake.public.ducklake_snapshot", "Only the synced tables"),
    ("SELECT * FROM __ducklake_metadata_sfduck_lake.pg_catalog.pg_authid", "Only the synced tables"),
    ("SELECT * FROM duckdb_settings() WHERE value LIKE '%password%'", "table function duckdb_settings"),
    ("SELECT * FROM duckdb_secrets()", "table function duckdb_secrets"),
    ("SELECT current_setting('pg_connection_limit')", "current_setting"),
    ("SELECT * FROM ducklake_snapshots('sfduck_lake')", "table function ducklake_snapshots"),
    ("SELECT * FROM ducklake_cleanup_old_files('sfduck_lake', cleanup_all => true)", "ducklake_cleanup_old_files"),
])
def test_nothing_beyond_the_synced_tables_is_reachable(lake: tuple[Target, str, int], sql: str, says: str) -> None:
    target, other, _ = lake
    with pytest.raises(QueryRefusedError, match=says) as exc:
        run_read_only_query(target, sql.format(other=other))
    assert PASSWORD not in str(exc.value) and "1000000" not in str(exc.value)


def test_ordinary_analytics_run_on_a_postgres_catalog_lake(lake: tuple[Target, str, int]) -> None:
    target, _, version = lake
    grouped = run_read_only_query(target, 'WITH x AS (SELECT b, count(*) AS n, rank() OVER (ORDER BY count(*) DESC) '
                                          'AS r FROM "S"."T" GROUP BY b) SELECT * FROM x ORDER BY b')
    assert grouped.table.num_rows == 7 and grouped.table.column("n").to_pylist()[0] == 15 + 50
    earlier = run_read_only_query(target, f'SELECT count(*) AS n FROM "S"."T" AT (VERSION => {version})')
    assert earlier.table.column("n").to_pylist() == [100]
    assert run_read_only_query(target, 'SELECT count(*) AS n FROM "S"."T"').table.column("n").to_pylist() == [150]
