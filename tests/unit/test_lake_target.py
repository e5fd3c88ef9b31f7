"""SFDUCK_TARGET: parsing, never printing a password, quoting what cannot be bound, and the
metadata migrations on a real DuckLake (SQLite catalog, offline extensions)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sfduck_core.config import Target, load_settings, parse_target
from sfduck_core.errors import ConfigError, InvalidIdentifierError
from sfduck_core.sqlident import quote_literal
from sfduck_core.storage import extension_file, lake_setup_sql
from sfduck_core.store import Store


def settings_with(tmp_path: Path, **env: str):
    return load_settings(env=env, dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "secrets.toml")


def test_the_default_target_is_the_duckdb_file_and_duckdb_prefix_names_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = settings_with(tmp_path, SFDUCK_DUCKDB_PATH="old.duckdb")
    assert plain.target is None and plain.storage == Target("duckdb", path=tmp_path / "old.duckdb")
    named = settings_with(tmp_path, SFDUCK_TARGET="duckdb:sub/new.duckdb")
    assert named.duckdb_path == tmp_path / "sub" / "new.duckdb" and not named.storage.is_lake


def test_a_sqlite_lake_resolves_paths_and_defaults_its_data_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lake = settings_with(tmp_path, SFDUCK_TARGET="ducklake:sqlite:lake/catalog.sqlite").storage
    assert lake.is_lake and lake.catalog == "sqlite"
    assert lake.catalog_location == str(tmp_path / "lake" / "catalog.sqlite")
    assert lake.data_path == str(tmp_path / "lake" / "catalog.sqlite.files") + "/"
    given = settings_with(tmp_path, SFDUCK_TARGET="ducklake:sqlite:c.sqlite", SFDUCK_LAKE_DATA_PATH="d").storage
    assert given.data_path == f"{tmp_path / 'd'}/"
    s3 = settings_with(tmp_path, SFDUCK_TARGET="ducklake:sqlite:c.sqlite", SFDUCK_LAKE_DATA_PATH="s3://b/p/")
    assert s3.storage.data_path == "s3://b/p/"
    assert any("httpfs" in sql for sql in lake_setup_sql(s3.storage))


@pytest.mark.parametrize("location", [
    "dbname=lake host=db.example user=sfduck password=s3cr3t-pw",
    "host=db password='s3cr3t-pw with space' dbname=lake",
    "postgresql://sfduck:s3cr3t-pw@db.example:5432/lake",
])
def test_a_postgres_password_never_prints(tmp_path: Path, location: str) -> None:
    settings = settings_with(tmp_path, SFDUCK_TARGET=f"ducklake:postgres:{location}", SFDUCK_LAKE_DATA_PATH="/lake/")
    assert settings.storage.catalog_location == location
    for text in (settings.describe(), repr(settings), settings.storage.describe(), repr(settings.storage)):
        assert "s3cr3t-pw" not in text


@pytest.mark.parametrize(("value", "data", "message"), [
    ("ducklake:postgres:dbname=x", None, "needs SFDUCK_LAKE_DATA_PATH"),
    ("ducklake:mysql:x", None, "is not understood"),
    ("ducklake:sqlite:", None, "is not understood"),
    ("parquet:x", None, "is not understood"),
    ("ducklake:sqlite:a\0b", None, "NUL"),
    ("ducklake:sqlite:a", "d\0", "NUL"),
])
def test_bad_targets_are_clear_errors(value: str, data: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_target(value, data, Path)


def test_a_postgres_error_message_does_not_echo_the_connection_string() -> None:
    with pytest.raises(ConfigError) as info:
        parse_target("ducklake:postgresql:password=s3cr3t-pw", None, Path)
    assert "s3cr3t-pw" not in str(info.value)


def test_values_that_cannot_be_bound_are_quoted_by_one_helper() -> None:
    assert quote_literal("it's") == "'it''s'"
    with pytest.raises(InvalidIdentifierError, match="NUL"):
        quote_literal("a\0b")
    hostile = Target("ducklake", catalog="sqlite", catalog_location="/x/c.sqlite' AS y; DROP TABLE t; --",
                     data_path="/d'/")
    attach = next(sql for sql in lake_setup_sql(hostile) if sql.startswith("ATTACH"))
    assert attach == ("ATTACH 'ducklake:sqlite:/x/c.sqlite'' AS y; DROP TABLE t; --' AS sfduck_lake "
                      "(DATA_PATH '/d''/')")
    assert len(duckdb.connect().extract_statements(attach)) == 1


def test_extensions_are_found_in_their_packages_for_this_duckdb() -> None:
    for name in ("ducklake", "sqlite_scanner", "postgres_scanner", "httpfs"):
        path = extension_file(name)
        assert path.is_file() and f"v{duckdb.__version__}" in str(path)


def test_the_commit_records_live_in_a_lake_and_the_store_works_there(tmp_path: Path) -> None:
    target = parse_target(f"ducklake:sqlite:{tmp_path / 'lake' / 'c.sqlite'}", str(tmp_path / "lake" / "d"), Path)
    store = Store(tmp_path / "unused.duckdb", target=target)
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=["ID"], detect_deletes=True,
                                    include_columns=[], exclude_columns=[])
    assert store.get_registration("S", "T") == reg and reg.primary_key == ("ID",)
    sync_id = store.start_job(reg, "full", "auto", None)
    assert store.cancel_requested(sync_id) is False
    store.request_cancel(sync_id)
    assert store.cancel_requested(sync_id) is True
    with store.connect() as con:  # the lake keeps only the commit records; the rest is metadata
        assert con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'sfduck_meta'").fetchall() == [
            ("sync_commits",)]
    assert not (tmp_path / "unused.duckdb").exists()
    assert (tmp_path / "lake" / "c.sqlite").stat().st_mode & 0o077 == 0


def test_the_sql_box_attaches_a_lake_read_only_and_reaches_no_other_file(tmp_path: Path) -> None:
    from sfduck_core.preview import QueryRefusedError, run_read_only_query

    target = parse_target(f"ducklake:sqlite:{tmp_path / 'c.sqlite'}", str(tmp_path / "d"), Path)
    store = Store(tmp_path / "unused.duckdb", target=target)
    with store.connect() as con:
        con.execute('CREATE SCHEMA "S"')
        con.execute('CREATE TABLE "S"."T" AS SELECT range AS id FROM range(2500)')
    assert run_read_only_query(target, 'SELECT count(*) AS n FROM "S"."T"').to_pandas()["n"].tolist() == [2500]
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the SQL box")
    with pytest.raises(QueryRefusedError, match="reads only the synced tables: the table function read_text"):
        run_read_only_query(target, f"SELECT * FROM read_text('{secret}')")
    with pytest.raises(QueryRefusedError, match="read-only"):
        run_read_only_query(target, 'DELETE FROM "S"."T"')


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_every_mapped_type_keeps_its_values_in_a_lakes_parquet_files(tmp_path: Path, catalog: str) -> None:
    """More rows than DuckLake inlines into its catalog (10), so the values go through Parquet files:
    NUMBER(38,0) at its extremes exactly (DuckDB's Parquet writer would make a HUGEINT a DOUBLE),
    TIME(9) rounded to microseconds (it has no nanosecond TIME), and a drift check sees no change of type."""
    from sfduck_core.incremental import apply_drift
    from sfduck_core.typemap import plan_columns

    if catalog == "postgres":
        pytest.importorskip("psycopg")
        from tests.integration.pg_cluster import postgres_cluster
        cluster = postgres_cluster()
        dsn = cluster.__enter__()
        if dsn is None:
            pytest.skip("PostgreSQL is not installed here")
        location = dsn
    else:
        cluster, location = None, str(tmp_path / "c.sqlite")
    try:
        target = parse_target(f"ducklake:{catalog}:{location}", str(tmp_path / "d"), Path)
        plans = plan_columns([("ID", "NUMBER(38,0)"), ("N", "NUMBER(38,10)"), ("T", "TIME(9)"),
                              ("TS", "TIMESTAMP_NTZ(9)"), ("TZ", "TIMESTAMP_TZ(9)"), ("J", "VARIANT")])
        big = "99999999999999999999999999999999999999"
        store = Store(tmp_path / "unused.duckdb", target=target)
        with store.connect() as con:
            store.storage.create_table(con, "S", "T", [(p.name, p.duckdb_type) for p in plans])
            con.execute(f"""INSERT INTO "S"."T" SELECT CASE WHEN range % 2 = 0 THEN {big}::HUGEINT - range
                            ELSE -{big}::HUGEINT + range END, 1234567890123456789012345678.0123456789,
                            TIME_NS '23:59:59.123456789', TIMESTAMP_NS '2024-02-29 12:00:00.123456789',
                            TIMESTAMPTZ '2024-02-29 12:00:00.123456+00', '{{"a": [1, 2]}}'::JSON
                            FROM range(50)""")
            assert list(Path(tmp_path / "d").rglob("*.parquet"))  # in a file, not inlined
            rows = con.execute('SELECT ID::VARCHAR, N::VARCHAR, T::VARCHAR, TS::VARCHAR, J::VARCHAR '
                               'FROM "S"."T" ORDER BY ID DESC LIMIT 2').fetchall()
            assert rows[0] == (big, "1234567890123456789012345678.0123456789", "23:59:59.123457",
                               "2024-02-29 12:00:00.123456789", '{"a": [1, 2]}')
            assert rows[1][0] == str(int(big) - 2)
            assert con.execute('SELECT min(ID)::VARCHAR FROM "S"."T"').fetchone()[0] == str(-int(big) + 1)
            assert apply_drift(store.storage, con, "S", "T", plans).as_dict()["types_widened"] == []
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)


def test_fixed_size_arrays_are_lists_in_a_lake_and_unchanged_in_a_file(tmp_path: Path) -> None:
    """DuckLake has no FLOAT[n] (Snowflake's VECTOR): the lake keeps a list, and schema drift sees
    no change of type on the next incremental sync."""
    from sfduck_core.incremental import apply_drift
    from sfduck_core.typemap import plan_columns

    target = parse_target(f"ducklake:sqlite:{tmp_path / 'c.sqlite'}", str(tmp_path / "d"), Path)
    [plan] = plan_columns([("V", "VECTOR(FLOAT, 3)")])
    assert plan.duckdb_type == "FLOAT[3]"
    for store, stored in ((Store(tmp_path / "f.duckdb"), "FLOAT[3]"),
                          (Store(tmp_path / "unused.duckdb", target=target), "FLOAT[]")):
        with store.connect() as con:
            store.storage.create_table(con, "S", "T", [("V", plan.duckdb_type)])
            con.execute("""INSERT INTO "S"."T" SELECT CAST('[1, 2, 3]' AS FLOAT[3])""")
            assert store.storage.table_columns(con, "S", "T") == [("V", stored)]
            assert apply_drift(store.storage, con, "S", "T", [plan]).as_dict()["types_widened"] == []


def test_an_unreachable_postgres_catalog_fails_without_its_password(tmp_path: Path) -> None:
    from sfduck_core.errors import StoreBusyError

    target = parse_target("ducklake:postgres:dbname=x host=127.0.0.1 port=1 user=u password=s3cr3t-pw "
                          "connect_timeout=2", str(tmp_path / "d"), Path)
    store = Store(tmp_path / "unused.duckdb", target=target)
    store.reap_dead_jobs()  # the metadata is elsewhere: nothing to open the lake for
    with pytest.raises(StoreBusyError, match="Could not open the DuckLake") as info, store.connect():
        pass
    assert "s3cr3t-pw" not in str(info.value) and "password=***" in str(info.value)


def test_retention_expires_old_versions_and_keeps_the_current_one(tmp_path: Path) -> None:
    import datetime as dt

    from sfduck_core.retention import RetentionPolicy, apply_retention

    target = parse_target(f"ducklake:sqlite:{tmp_path / 'c.sqlite'}", str(tmp_path / "d"), Path)
    store = Store(tmp_path / "unused.duckdb", target=target)
    for rows in (1000, 2000, 3000):
        with store.connect() as con:
            con.execute(f'CREATE OR REPLACE TABLE "T" AS SELECT range AS id FROM range({rows})')
    files = lambda: sorted((tmp_path / "d").rglob("*.parquet"))  # noqa: E731
    assert len(files()) == 3
    week = RetentionPolicy(keep_versions=None, keep_days=7)
    assert apply_retention(store, week)["files_deleted"] == 0  # nothing that old yet
    done = apply_retention(store, week, moment=dt.datetime.now(dt.UTC) + dt.timedelta(days=8))
    assert done["snapshots_expired"] > 0 and done["files_deleted"] == 2 and len(files()) == 1
    with store.connect() as con:
        assert con.execute('SELECT count(*) FROM "T"').fetchone()[0] == 3000
    with pytest.raises(Exception, match="an hour at least"):
        store.expire_lake_snapshots([], orphan_grace=dt.timedelta(0))
    with pytest.raises(Exception, match="applies to a DuckLake target"):
        Store(tmp_path / "file.duckdb").lake_snapshots()
