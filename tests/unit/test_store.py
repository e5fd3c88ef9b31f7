"""The store: sharing the DuckDB file between processes, the metadata beside it, dead jobs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfduck_core.errors import StoreBusyError, SyncAlreadyRunningError
from sfduck_core.files import private_dir
from sfduck_core.metadata import METADATA_FILE, JobQuery, MetadataDatabase
from sfduck_core.metadata.tables import sync_jobs
from sfduck_core.storage import METADATA_SCHEMA
from sfduck_core.store import Store


@contextlib.contextmanager
def held_file(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (an analyst's DuckDB) holding the file open for the body."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                               "time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_busy_file_waits_a_bounded_time_then_says_so(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    Store(path).reap_dead_jobs()  # create it
    with held_file(path) as holder:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="is open in .*waited 1 s") as info, Store(path, lock_timeout_s=1).connect():
            pass
        waited = time.monotonic() - started
        assert 0.9 <= waited < 10
        assert str(holder.pid) in str(info.value)
    with Store(path, lock_timeout_s=1).connect() as con:
        assert con.execute("SELECT 42").fetchone()[0] == 42


def test_the_data_file_holds_only_the_commit_records_and_the_metadata_lives_beside_it(tmp_path: Path) -> None:
    """Issue 21 item 2: registrations and jobs live in their own database (a SQLite file beside
    the data by default); the data file keeps only sfduck_meta.sync_commits (item 3)."""
    store = Store(tmp_path / "m.duckdb")
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    store.start_job(reg, "full", "auto", None)
    with store.connect() as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [METADATA_SCHEMA]).fetchall()}
    assert tables == {"sync_commits"}
    assert (tmp_path / METADATA_FILE).is_file()
    assert MetadataDatabase.beside(tmp_path).registrations.get("S", "T") == reg


def test_reads_of_jobs_and_registrations_never_open_the_data_file(tmp_path: Path) -> None:
    """Issue 21: an analyst holding the DuckDB file no longer stops the status, history and jobs."""
    path = tmp_path / "held.duckdb"
    store = Store(path, lock_timeout_s=1)
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    sync_id = store.start_job(reg, "full", "auto", None)
    with held_file(path):
        with pytest.raises(StoreBusyError), store.connect():  # the file is truly held
            pass
        assert store.get_job(sync_id)["status"] == "running"
        assert store.find_jobs(JobQuery())[1] == 1 and store.running_jobs()[0]["sync_id"] == sync_id
        assert store.list_registrations() == [reg] and store.sync_status("S", "T")["last_status"] == "running"
        store.ping()
        store.request_cancel(sync_id)
        assert store.cancel_requested(sync_id)


def test_a_job_left_running_by_a_dead_process_is_failed_and_frees_its_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "j.duckdb")
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sync_id = store.start_job(reg, "full", "auto", None)
    _belongs_to(store, sync_id, dead.pid)
    store.finish(sync_id)
    second = store.start_job(reg, "full", "auto", None)
    old = store.get_job(sync_id)
    assert old["status"] == "failed" and f"process {dead.pid} ended" in old["error_message"]
    assert old["error_message"].startswith("The sfduck command stopped during this sync")
    with pytest.raises(SyncAlreadyRunningError):
        store.start_job(reg, "full", "auto", None)
    assert store.get_job(second)["status"] == "running"
    assert uuid.UUID(second).version == 7  # time-ordered


def _belongs_to(store: Store, sync_id: str, pid: int) -> None:
    """Pretend the job belonged to that (now dead) process."""
    with store.metadata.write() as conn:
        conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == sync_id).values(pid=pid, process_started=None))


def test_a_dead_job_whose_data_committed_is_settled_completed_with_its_stats(tmp_path: Path) -> None:
    """Issue 21 item 3: the data committed, then the process died before the metadata heard of it:
    the data's commit record settles the job, with the stats and the table status it recorded."""
    store = Store(tmp_path / "c.duckdb")
    reg = store.upsert_registration("S", "T", incremental_key="K", primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    committed_id, lost_id = store.start_job(reg, "full", "auto", None), None
    with store.connect() as con:
        con.execute("BEGIN")
        con.execute("CREATE TABLE main.t AS SELECT 1 AS k")
        store.mark_committed(con, reg, committed_id, {"rows_processed": 1}, "arrow", row_count=1,
                             watermark={"column": "K", "value": "1"})
        con.execute("COMMIT")
    _belongs_to(store, committed_id, dead.pid)
    store.finish(committed_id)
    store.reap_dead_jobs()
    job = store.get_job(committed_id)
    assert (job["status"], job["stats"], job["transport"]) == ("completed", {"rows_processed": 1}, "arrow")
    status = store.sync_status("S", "T")
    assert (status["last_success_sync_id"], status["row_count"], status["watermark"]) == (
        committed_id, 1, {"column": "K", "value": "1"})
    lost_id = store.start_job(reg, "full", "auto", None)
    with store.connect() as con:  # its transaction never committed
        con.execute("BEGIN")
        store.mark_committed(con, reg, lost_id, {}, "arrow")
        con.execute("ROLLBACK")
    _belongs_to(store, lost_id, dead.pid)
    store.finish(lost_id)
    store.reap_dead_jobs()
    assert store.get_job(lost_id)["status"] == "failed"
    assert store.sync_status("S", "T")["last_success_sync_id"] == committed_id


def test_a_failure_the_store_could_not_take_outlives_its_process(tmp_path: Path) -> None:
    """Issue 18 item 12: a sync whose failure could not be written (a full disk; here the metadata
    database locked by another process) and whose process then ended is reaped with that failure,
    not "stopped"."""
    path = tmp_path / "n.duckdb"
    code = r"""
import subprocess, sys
import sfduck_core.metadata.engine as engine
engine.SQLITE_BUSY_TIMEOUT_S = 0.5
from sfduck_core.store import Store
store = Store(sys.argv[1])
reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                include_columns=(), exclude_columns=())
sync_id = store.start_job(reg, "full", "auto", None)
holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
                          "isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); "
                          "sys.stdin.read()", sys.argv[2]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "held"
store.fail_job(reg, sync_id, "No space left on the device holding /data (test)", {})
store.finish(sync_id)
holder.stdin.close()
holder.wait()
print(sync_id)
"""
    run = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / METADATA_FILE)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    sync_id = run.stdout.strip()
    store = Store(path)
    assert store.get_job(sync_id)["status"] == "running"  # the failure never reached the metadata
    store.reap_dead_jobs()
    assert store.get_job(sync_id)["error_message"] == "No space left on the device holding /data (test)"
    assert not any(store.notes_dir.iterdir())


def test_what_sfduck_creates_is_owner_only(tmp_path: Path) -> None:
    """Issue 9 item 12: the DuckDB file, its folder, the login state and the key, whatever the umask."""
    import os
    import stat

    from sfduck_core.authdb import AuthDatabase
    from sfduck_core.sessions import SESSION_KEY_FILE, resolve_session_key

    old = os.umask(0o022)
    try:
        state = tmp_path / "fresh" / "state"
        store = Store(state / "sfduck.duckdb")
        store.list_registrations()
        with store.connect():
            pass
        AuthDatabase(state / "auth.sqlite")
        resolve_session_key(None, state)
        private_dir(tmp_path / "data" / "tmp" / "job")
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert [mode(p) for p in (tmp_path / "fresh", state, tmp_path / "data", tmp_path / "data" / "tmp")] == [0o700] * 4
    files = (state / "sfduck.duckdb", state / "auth.sqlite", state / SESSION_KEY_FILE, state / METADATA_FILE)
    assert {p.name: mode(p) for p in files} == {
        "sfduck.duckdb": 0o600, "auth.sqlite": 0o600, SESSION_KEY_FILE: 0o600, METADATA_FILE: 0o600}


def test_modes_an_administrator_chose_are_kept(tmp_path: Path) -> None:
    import stat

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    shared.chmod(0o750)
    Store(shared / "sfduck.duckdb").list_registrations()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750


def test_one_file_never_mixes_two_snowflakes(tmp_path: Path) -> None:
    """Issue 9 item 3: demo mode never starts on an account's data (nor one account on another's)."""
    from sfduck_core.errors import ConfigError

    store = Store(tmp_path / "prod.duckdb")
    store.claim_source("demo")
    store.claim_source("acme")  # nothing registered yet: a real account takes over a tried-out file
    store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                              include_columns=(), exclude_columns=())
    store.claim_source("acme")
    with pytest.raises(ConfigError, match="holds tables from the Snowflake account 'acme'.*demo emulator"):
        store.claim_source("demo")


def test_a_skip_is_a_success_for_the_tables_status_and_only_a_success_is_recorded_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    sync_id = store.start_job(reg, "full", "auto", None)
    store.complete_job(reg, sync_id, {"skipped": True}, "none", status="skipped")
    with pytest.raises(ValueError, match="not 'failed'"):
        store.complete_job(reg, sync_id, {}, "none", status="failed")
    with store.connect() as con, pytest.raises(ValueError, match="not 'failed'"):
        store.mark_committed(con, reg, sync_id, {}, "none", status="failed")
    store.finish(sync_id)
    status = store.sync_status("S", "T")
    assert (status["last_status"], status["last_success_sync_id"]) == ("skipped", sync_id)
    assert store.get_job(sync_id)["status"] == "skipped"


def test_opening_a_store_creates_no_data_file_until_something_is_synced(tmp_path: Path) -> None:
    """The upgrade's first look (an earlier release's sfduck_meta) must not create the file it looks at."""
    data = tmp_path / "sfduck.duckdb"
    store = Store(data)
    store.upsert_registration("S", "T", incremental_key=None, primary_key=[], detect_deletes=False,
                              include_columns=[], exclude_columns=[])
    assert store.get_registration("S", "T") is not None and not data.exists()
