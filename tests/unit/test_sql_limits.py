"""The SQL box's resource limits: bytes, memory, temp disk, concurrency, environment, files, paths."""

from __future__ import annotations

import gc
import io
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sfduck_core import preview, sql_sandbox
from sfduck_core.config import load_settings
from sfduck_core.errors import SfduckError, StoreBusyError
from sfduck_core.preview import (
    QueryMemoryError,
    QueryRefusedError,
    QueryTimeoutError,
    TooManyQueriesError,
    cached_summary,
    displayable,
    run_read_only_query,
    to_csv_bytes,
    to_parquet_bytes,
)
from sfduck_core.store import Store

SCHEMA, TABLE = "WORKSPACE_1", "Orders"
WIDE_ROWS = "SELECT repeat('x', 10000) AS s FROM range(5000)"  # 50 MB in all, 10 kB a row


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sfduck.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f'CREATE SCHEMA "{SCHEMA}"')
        con.execute(f'CREATE TABLE "{SCHEMA}"."{TABLE}" AS SELECT range AS id, range % 7 AS bucket FROM range(2500)')
    return path


def work_directories(db: Path) -> list[Path]:
    return sorted(db.parent.glob(".sfduck-sql-*"))


def assert_one_line(exc: pytest.ExceptionInfo[BaseException]) -> None:
    assert "\n" not in str(exc.value) and "Traceback" not in str(exc.value)


# --- 1. bytes -------------------------------------------------------------------------------------


def test_result_is_cut_at_the_byte_cap_in_the_child(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[int] = []
    spawn = preview._spawn

    def measured(request: dict[str, Any], timeout_s: float) -> tuple[bytes, bytes, int]:
        out, err, code = spawn(request, timeout_s)
        received.append(len(out))
        return out, err, code

    monkeypatch.setattr(preview, "_spawn", measured)
    result = run_read_only_query(db, WIDE_ROWS, max_bytes=1_000_000)
    assert result.cut == "bytes" and result.truncated
    assert 50 <= result.table.num_rows <= 100 and result.table.nbytes <= 1_000_000
    assert received[0] <= 1_000_000 + 64_000  # what crossed the pipe: the cap plus IPC framing
    whole = run_read_only_query(db, "SELECT repeat('x', 10000) AS s FROM range(50)", max_bytes=1_000_000)
    assert whole.cut is None and whole.table.num_rows == 50


def test_row_cap_is_reported_as_rows(db: Path) -> None:
    result = run_read_only_query(db, f'SELECT * FROM "{SCHEMA}"."{TABLE}"', max_rows=10)
    assert result.cut == "rows" and result.table.num_rows == 10


def test_the_documented_row_cap_is_the_one_the_sql_box_applies(db: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    security = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"([\d,]+) rows per result", security)
    assert documented == [f"{preview.QUERY_MAX_ROWS:,}"]
    result = run_read_only_query(db, f"SELECT range AS n FROM range({preview.QUERY_MAX_ROWS + 7})")
    assert result.cut == "rows" and result.table.num_rows == preview.QUERY_MAX_ROWS


def test_a_single_value_larger_than_the_cap_is_refused(db: Path) -> None:
    with pytest.raises(QueryRefusedError, match="single row of the result is larger than .* limit of 1 MB") as exc:
        run_read_only_query(db, "SELECT 1 AS id, repeat('x', 3000000) AS s", max_bytes=1 << 20)
    assert_one_line(exc)


def test_the_byte_cap_is_a_setting(tmp_path: Path) -> None:
    def settings(env: dict[str, str]) -> Any:
        return load_settings(env, dotenv_path=tmp_path / "none.env", secrets_path=tmp_path / "none.toml")

    assert settings({}).sql_max_bytes == 32 << 20
    assert settings({"SFDUCK_SQL_MAX_BYTES": "1000000"}).sql_max_bytes == 1_000_000
    with pytest.raises(SfduckError, match="SFDUCK_SQL_MAX_BYTES must be a positive number"):
        settings({"SFDUCK_SQL_MAX_BYTES": "-5"})


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's total counted from zero: results other tests still hold do not count here."""
    monkeypatch.setattr(preview, "_BUDGET", preview._ResultBudget())


@pytest.mark.usefixtures("budget")
def test_the_results_of_every_session_together_are_bounded(db: Path) -> None:
    """Results kept by sessions count against one total for the process: a query gets the room
    left (cut, and says so), is refused when about none is left, and a dropped result frees its share."""
    total, one = 2_700_000, "SELECT repeat('x', 10000) AS s FROM range(150)"  # 1.5 MB
    first = run_read_only_query(db, one, max_bytes=2_000_000, total_bytes=total)
    assert first.cut is None and first.table.num_rows == 150
    second = run_read_only_query(db, one, max_bytes=2_000_000, total_bytes=total)
    assert second.cut == "total" and 0 < second.table.num_rows < 150 and second.table.nbytes <= 1_200_000
    with pytest.raises(TooManyQueriesError, match="results held in this server for everyone reach their limit "
                                                  "\\(2.57 MB, SFDUCK_SQL_TOTAL_BYTES\\)"):
        run_read_only_query(db, one, max_bytes=2_000_000, total_bytes=total)
    del first, second
    gc.collect()
    again = run_read_only_query(db, one, max_bytes=2_000_000, total_bytes=total)
    assert again.cut is None and again.table.num_rows == 150


def hold_slow_queries(monkeypatch: pytest.MonkeyPatch, hold_s: float,
                      ) -> tuple[threading.Event, threading.Event, list[dict[str, Any]]]:
    """Make the SQL box's child hold a query whose text says 'slow' until released (or `hold_s`):
    (set once one is held, set it to release them, every request the child was given)."""
    started, release = threading.Event(), threading.Event()
    requests: list[dict[str, Any]] = []
    spawn = preview._spawn

    def held(request: dict[str, Any], timeout_s: float) -> tuple[bytes, bytes, int]:
        requests.append(request)
        if "slow" in request["sql"]:
            started.set()
            release.wait(hold_s)
        return spawn(request, timeout_s)

    monkeypatch.setattr(preview, "_spawn", held)
    return started, release, requests


@pytest.mark.usefixtures("budget")
def test_queries_running_at_once_share_the_total(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a running query may still receive is reserved before its child starts, so a second
    query started meanwhile gets only the rest: together they never pass the total."""
    started, release, requests = hold_slow_queries(monkeypatch, 20)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(run_read_only_query(
        db, "SELECT 'slow' AS s, repeat('x', 10000) FROM range(150)", user="ann", max_bytes=2_000_000,
        total_bytes=3_200_000)))
    worker.start()
    try:
        assert started.wait(20)
        other = run_read_only_query(db, "SELECT repeat('x', 10000) AS s FROM range(150)", user="bob",
                                    max_bytes=2_000_000, total_bytes=3_200_000)
    finally:
        release.set()
        worker.join(30)
    assert [r["max_bytes"] for r in requests] == [2_000_000, 1_200_000]
    assert other.cut == "total" and results[0].cut is None


def test_the_total_is_a_setting(tmp_path: Path) -> None:
    def settings(env: dict[str, str]) -> Any:
        return load_settings(env, dotenv_path=tmp_path / "none.env", secrets_path=tmp_path / "none.toml")

    assert settings({}).sql_total_bytes == 256 << 20 == preview.QUERY_TOTAL_BYTES
    assert settings({"SFDUCK_SQL_TOTAL_BYTES": "100000000"}).sql_total_bytes == 100_000_000
    with pytest.raises(SfduckError, match="SFDUCK_SQL_TOTAL_BYTES must be a positive number"):
        settings({"SFDUCK_SQL_TOTAL_BYTES": "0"})


# --- 2. memory ------------------------------------------------------------------------------------


def test_the_os_bounds_the_childs_memory(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's own limit set out of the way: only the OS limit can stop this 300 MB string."""
    monkeypatch.setattr(preview, "CHILD_MEMORY_LIMIT", "4GB")
    monkeypatch.setattr(preview, "CHILD_MAX_MEMORY_BYTES", 300 << 20)
    with pytest.raises(QueryMemoryError, match="needed more memory than the SQL box allows") as exc:
        run_read_only_query(db, "SELECT length(repeat('x', 300000000)) AS n")
    assert_one_line(exc)
    assert run_read_only_query(db, "SELECT 42 AS x").to_pandas()["x"].tolist() == [42]


def test_a_child_that_dies_of_memory_is_reported_plainly(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview, "_spawn", lambda request, timeout_s: (b"", b"Killed", -9))
    with pytest.raises(QueryMemoryError, match="needed more memory than the SQL box allows"):
        run_read_only_query(db, "SELECT 1")


# --- 3. one query per user, few at once -----------------------------------------------------------


def test_one_query_per_user_and_a_global_cap(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release, _ = hold_slow_queries(monkeypatch, 10)
    errors: list[BaseException] = []

    def run_slow() -> None:
        try:
            run_read_only_query(db, "SELECT 'slow' AS x", user="ann", max_concurrent=2)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=run_slow)
    worker.start()
    try:
        assert started.wait(10)
        with pytest.raises(TooManyQueriesError, match="You already have a query running"):
            run_read_only_query(db, "SELECT 1", user="ann", max_concurrent=2)
        assert run_read_only_query(db, "SELECT 2 AS x", user="bob", max_concurrent=2).table.num_rows == 1
        with pytest.raises(TooManyQueriesError, match="already running 1 queries, its limit"):
            run_read_only_query(db, "SELECT 3", user="bob", max_concurrent=1)
    finally:
        release.set()
        worker.join(20)
    assert not errors
    assert run_read_only_query(db, "SELECT 4 AS x", user="ann").table.num_rows == 1  # the slot was freed


# --- 4. temp directory ----------------------------------------------------------------------------

BIG_SORT = "SELECT count(*) AS n FROM (SELECT range, md5(range::VARCHAR) AS m FROM range(3000000) ORDER BY m)"


def test_spilling_works_within_a_bounded_private_temp_directory(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview, "CHILD_MEMORY_LIMIT", "64MB")
    assert run_read_only_query(db, BIG_SORT, timeout_s=60).to_pandas()["n"].tolist() == [3_000_000]
    monkeypatch.setattr(preview, "CHILD_MAX_TEMP_SIZE", "10MB")
    with pytest.raises(QueryMemoryError, match="more temporary disk space than the SQL box allows \\(10MB\\)"):
        run_read_only_query(db, BIG_SORT, timeout_s=60)
    assert work_directories(db) == []
    assert not Path(f"{db}.tmp").exists()


def test_the_temp_directory_is_removed_after_a_timeout_kill(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    spawn = preview._spawn

    def watched(request: dict[str, Any], timeout_s: float) -> tuple[bytes, bytes, int]:
        seen.append(Path(request["workdir"]))
        return spawn(request, timeout_s)

    monkeypatch.setattr(preview, "_spawn", watched)
    monkeypatch.setattr(preview, "CHILD_MEMORY_LIMIT", "32MB")  # spills while it runs
    with pytest.raises(QueryTimeoutError):
        run_read_only_query(db, "SELECT count(*) FROM (SELECT md5(range::VARCHAR) AS m FROM range(100000000) "
                                "ORDER BY m)", timeout_s=3)
    assert len(seen) == 1 and seen[0].parent == db.parent and not seen[0].exists()
    assert work_directories(db) == []


# --- 5. environment -------------------------------------------------------------------------------


def test_the_child_gets_no_secrets(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"SNOWFLAKE_PASSWORD": "hunter2", "SNOWFLAKE_ACCOUNT": "acme", "MY_API_KEY": "k",
               "AWS_SECRET_ACCESS_KEY": "s", "GITHUB_TOKEN": "t", "PGPASSWORD": "p", "SFDUCK_COOKIE_KEY": "c"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    environments: list[dict[str, str]] = []
    popen = subprocess.Popen

    def spy(*args: Any, **kwargs: Any) -> subprocess.Popen:
        environments.append(dict(kwargs["env"]))
        return popen(*args, **kwargs)

    monkeypatch.setattr(preview.subprocess, "Popen", spy)
    assert run_read_only_query(db, "SELECT 1 AS x").table.num_rows == 1
    [env] = environments
    leaked = [k for k in env if k.startswith("SNOWFLAKE_") or any(w in k.upper() for w in
                                                                  ("PASSWORD", "KEY", "SECRET", "TOKEN"))]
    assert leaked == [] and "hunter2" not in env.values()


# --- 6. files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "SELECT * FROM read_blob('{db}')",
    "SELECT * FROM read_text('{db}')",
    "SELECT * FROM read_blob('{db}.wal')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM read_blob('{dir}/.sfduck-sql-x/../sfduck.duckdb')",
])
def test_the_database_file_itself_is_unreadable(db: Path, tmp_path: Path, template: str) -> None:
    """Both walls: the SQL box's policy refuses the table function, and DuckDB's own settings refuse
    the file to a sandboxed connection that runs it without that policy."""
    db.with_name(db.name + ".wal").write_bytes(b"")
    sql = template.format(db=db, dir=db.parent)
    with pytest.raises(QueryRefusedError, match="reads only the synced tables: the table function") as exc:
        run_read_only_query(db, sql)
    assert_one_line(exc)
    workdir = tmp_path / "work"
    workdir.mkdir()
    con = sql_sandbox.open_sandboxed({"path": str(db), "workdir": str(workdir), "memory_limit": "64MB",
                                      "max_temp_size": "1GB", "busy_retry_s": 1.0})
    try:
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql).fetchall()
    finally:
        con.close()


def test_without_a_hard_link_local_files_are_switched_off(db: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the link cannot be made (another file system), the child opens the file itself."""
    def no_link(source: object, target: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(sql_sandbox.os, "link", no_link)
    workdir = tmp_path / "work"
    workdir.mkdir()
    request = {"path": str(db), "workdir": str(workdir), "memory_limit": "64MB", "max_temp_size": "1GB",
               "busy_retry_s": 1.0}
    con = sql_sandbox.open_sandboxed(request)
    try:
        assert con.execute(f'SELECT count(*) FROM "{SCHEMA}"."{TABLE}"').fetchone() == (2500,)
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_blob('{db}')")
    finally:
        con.close()


@pytest.mark.parametrize("template, message", [
    ("COPY (SELECT 1) TO '{db}.tmp/out.csv'", "cannot read or write files"),
    ("SELECT 1; SELECT 2", "exactly one statement; found 2"),
    ("PRAGMA show_tables", "read-only: PRAGMA"),
    ("RESET threads", "cannot change DuckDB settings"),
    ("CALL duckdb_settings()", "read-only: CALL"),
])
def test_the_child_runs_only_one_select(db: Path, monkeypatch: pytest.MonkeyPatch, template: str,
                                        message: str) -> None:
    monkeypatch.setattr(preview, "check_read_only_query", lambda text: text)
    with pytest.raises(QueryRefusedError, match=message):
        run_read_only_query(db, template.format(db=db))
    assert not Path(f"{db}.tmp/out.csv").exists()


# --- 7. SUMMARIZE once per sync --------------------------------------------------------------------


def test_summary_is_computed_once_per_table_and_sync(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    summarize = preview.summarize

    def counted(store: Store, schema: str, table: str) -> Any:
        calls.append((schema, table))
        return summarize(store, schema, table)

    monkeypatch.setattr(preview, "summarize", counted)
    store = Store(db)
    first = cached_summary(store, SCHEMA, TABLE, "sync-1")
    again = cached_summary(store, SCHEMA, TABLE, "sync-1")  # an Arrow table: no caller can change it
    assert len(calls) == 1 and again.equals(first) and set(again["column_name"].to_pylist()) == {"id", "bucket"}
    cached_summary(store, SCHEMA, TABLE, "sync-2")
    assert len(calls) == 2


# --- 8. types that break rendering ----------------------------------------------------------------

AWKWARD_TYPES = ("SELECT INTERVAL '1 day 2 hours' AS iv, union_value(num := 2)::UNION(num INT, str VARCHAR) AS un, "
                 "'infinity'::DATE AS d_inf, '-infinity'::TIMESTAMP AS ts_inf, '10000-01-01'::DATE AS far, "
                 "170141183460469231731687303715884105727::HUGEINT AS hi, {'a': 1, 'b': [1, 2]} AS st, "
                 "MAP {'k': 1} AS mp, [1, 2, 3] AS li, '\\x00\\xFF'::BLOB AS bl, 7 AS plain, "
                 "DATE '2024-05-01' AS day")


def test_awkward_types_become_text_and_plain_ones_stay(db: Path) -> None:
    result = run_read_only_query(db, AWKWARD_TYPES)
    row = result.to_pandas().iloc[0].to_dict()
    assert row["iv"] == "1 day 02:00:00" and row["un"] == "2" and row["d_inf"] == "infinity"
    assert row["ts_inf"] == "-infinity" and row["far"] == "10000-01-01"
    assert row["st"] == "{'a': 1, 'b': [1, 2]}" and row["mp"] == "{k=1}" and row["li"] == "[1, 2, 3]"
    assert row["bl"] == "\\x00\\xFF" and str(row["hi"]) == "170141183460469231731687303715884105727"
    assert row["plain"] == 7 and str(row["day"]) == "2024-05-01"
    assert "1 day 02:00:00,2,infinity" in to_csv_bytes(result.table).decode()
    back = pq.read_table(io.BytesIO(to_parquet_bytes(result.table)))
    assert back.column("un").to_pylist() == ["2"] and back.column("li").to_pylist() == [[1, 2, 3]]


def test_displayable_keeps_column_names_and_order() -> None:
    table = pa.table({"a": [1], "b": pa.array([[1]]), "c": ["x"]})
    assert displayable(table).column_names == ["a", "b", "c"]
    assert displayable(table).schema.field("b").type == pa.string()


# --- 9. paths -------------------------------------------------------------------------------------


def test_a_relative_database_path_works_from_any_directory(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    result = run_read_only_query(Path(db.name), f'SELECT count(*) AS n FROM "{SCHEMA}"."{TABLE}"')
    assert result.to_pandas()["n"].tolist() == [2500]


def test_missing_bad_and_busy_databases_say_different_things(db: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SfduckError, match=f"^No database at {tmp_path / 'none.duckdb'}: run a sync first"):
        run_read_only_query("none.duckdb", "SELECT 1")
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(os.urandom(8192))
    with pytest.raises(SfduckError, match=f"^No usable database at {bad}: run a sync first") as exc:
        run_read_only_query("bad.duckdb", "SELECT 1")
    assert not isinstance(exc.value, StoreBusyError)
    holder = duckdb.connect(str(db))
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="busy: a sync is loading data"):
            run_read_only_query(db.name, "SELECT 1", busy_retry_s=0.3)
        assert time.monotonic() - started < 8
    finally:
        holder.close()
