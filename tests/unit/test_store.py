"""The DuckDB store: sharing the file between processes, versioned metadata, dead jobs."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from sfduck_core.errors import StoreBusyError, SyncAlreadyRunningError
from sfduck_core.files import private_dir
from sfduck_core.store import META, MIGRATIONS, Store, _migrated


def test_a_busy_file_waits_a_bounded_time_then_says_so(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    Store(path).reap_dead_jobs()  # create it
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                               "time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="in use by another process") as info, Store(path, lock_timeout_s=1).connect():
            pass
        waited = time.monotonic() - started
        assert 0.9 <= waited < 10
        assert str(holder.pid) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with Store(path, lock_timeout_s=1).connect() as con:
        assert con.execute("SELECT 42").fetchone()[0] == 42


def test_metadata_is_created_once_and_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    store.reap_dead_jobs()
    store.reap_dead_jobs()
    with store.connect() as con:
        versions = con.execute(f"SELECT version FROM {META}.schema_version").fetchall()
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [META]).fetchall()}
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]
    assert {"allowed_tables", "sync_jobs", "table_sync_status", "schema_version"} <= tables


def test_a_job_left_running_by_a_dead_process_is_failed_and_frees_its_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "j.duckdb")
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sync_id = store.start_job(reg, "full", "auto", None)
    with store.connect() as con:  # pretend the job belonged to that (now dead) process
        con.execute(f"UPDATE {META}.sync_jobs SET pid = ?, process_started = NULL WHERE sync_id = ?",
                    [dead.pid, sync_id])
    store.finish(sync_id)
    second = store.start_job(reg, "full", "auto", None)
    old = store.get_job(sync_id)
    assert old["status"] == "failed" and f"process {dead.pid} ended" in old["error_message"]
    assert old["error_message"].startswith("The sfduck command stopped during this sync")
    with pytest.raises(SyncAlreadyRunningError):
        store.start_job(reg, "full", "auto", None)
    assert store.get_job(second)["status"] == "running"


def test_job_rows_have_no_index_that_a_crash_could_leave_stale(tmp_path: Path) -> None:
    """Issue 18 item 1: after a kill -9, the replayed ART index of sync_jobs no longer found a
    running job, so recovery and cancel updated nothing. A file made before has its indexes
    dropped; job lookups scan (time-ordered ids keep that to one row group)."""
    path = tmp_path / "old.duckdb"
    Store(path).reap_dead_jobs()
    index_migration = 1 + next(i for i, m in enumerate(MIGRATIONS) if any("DROP INDEX" in sql for sql in m))
    with duckdb.connect(str(path)) as con:  # as a file migrated by a version that had the indexes
        con.execute(f"CREATE INDEX sync_jobs_by_id ON {META}.sync_jobs (sync_id)")
        con.execute(f"CREATE INDEX sync_jobs_by_table ON {META}.sync_jobs (table_id)")
        con.execute(f"DELETE FROM {META}.schema_version WHERE version >= ?", [index_migration])
    _migrated.discard(str(path.resolve()))
    store = Store(path)
    store.reap_dead_jobs()
    with store.connect() as con:
        assert con.execute("SELECT index_name FROM duckdb_indexes() WHERE schema_name = ?", [META]).fetchall() == []
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    assert uuid.UUID(store.start_job(reg, "full", "auto", None)).version == 7  # time-ordered


def test_a_failure_the_store_could_not_take_outlives_its_process(tmp_path: Path) -> None:
    """Issue 18 item 12: a sync whose failure could not be written (a full disk; here the file held
    by another process) and whose process then ended is reaped with that failure, not "stopped"."""
    path = tmp_path / "n.duckdb"
    code = r"""
import subprocess, sys
from sfduck_core.store import Store
store = Store(sys.argv[1], lock_timeout_s=0.5)
reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                include_columns=(), exclude_columns=())
sync_id = store.start_job(reg, "full", "auto", None)
holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                          "print('held', flush=True); sys.stdin.read()", sys.argv[1]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "held"
store.fail_job(reg, sync_id, "No space left on the device holding /data (test)", {})
store.finish(sync_id)
holder.stdin.close()
holder.wait()
print(sync_id)
"""
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    sync_id = run.stdout.strip()
    store = Store(path)
    assert store.get_job(sync_id)["status"] == "running"  # the failure never reached the file
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
        AuthDatabase(state / "auth.sqlite")
        resolve_session_key(None, state)
        private_dir(tmp_path / "data" / "tmp" / "job")
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert [mode(p) for p in (tmp_path / "fresh", state, tmp_path / "data", tmp_path / "data" / "tmp")] == [0o700] * 4
    assert {p.name: mode(p) for p in (state / "sfduck.duckdb", state / "auth.sqlite", state / SESSION_KEY_FILE)} == {
        "sfduck.duckdb": 0o600, "auth.sqlite": 0o600, SESSION_KEY_FILE: 0o600}


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
    with store.connect() as con:
        con.execute(f"INSERT INTO {META}.allowed_tables (table_id, schema_name, table_name, status, updated_at, "
                    "created_at) VALUES ('t', 'S', 'T', 'active', now(), now())")
    store.claim_source("acme")
    with pytest.raises(ConfigError, match="holds tables from the Snowflake account 'acme'.*demo emulator"):
        store.claim_source("demo")


@pytest.mark.parametrize("kind", ["file", "lake"])
def test_old_skipped_syncs_read_as_skipped_after_the_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               kind: str) -> None:
    """Before `skipped` was a status, a skip ended `completed` with `skipped: true` in its stats;
    an existing file or lake gets those jobs (and the table's last status) renamed, nothing else."""
    import sfduck_core.store as store_module
    from sfduck_core.config import parse_target

    renaming = next(i for i, m in enumerate(MIGRATIONS) if any("SET status = 'skipped'" in sql for sql in m))
    target = (parse_target(f"ducklake:sqlite:{tmp_path / 'c.sqlite'}", str(tmp_path / "d"), Path)
              if kind == "lake" else None)

    def open_store() -> Store:
        return Store(tmp_path / "old.duckdb", target=target)

    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:renaming])
    monkeypatch.setattr(store_module, "_migrated", set())
    old = open_store()
    ids: dict[str, str] = {}
    # T: a full sync then a skip; U: a skip then a full sync; V: a full sync, a skip, then a failure
    for table, runs in (("T", ["full", "skip"]), ("U", ["skip", "full"]), ("V", ["full", "skip", "fail"])):
        reg = old.upsert_registration("S", table, incremental_key=None, primary_key=(), detect_deletes=False,
                                      include_columns=(), exclude_columns=())
        for run in runs:
            sync_id = ids[f"{table}_{run}"] = old.start_job(reg, "full", "auto", None)
            if run == "fail":
                old.fail_job(reg, sync_id, "boom", {"skipped": True})
            else:
                with old.connect() as con:
                    old.complete_job(con, reg, sync_id, {"skipped": run == "skip"}, "none")
            old.finish(sync_id)
    assert {job["status"] for job in old.history()} == {"completed", "failed"}

    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    monkeypatch.setattr(store_module, "_migrated", set())
    new = open_store()
    statuses = {job["sync_id"]: job["status"] for job in new.history()}
    expected = {"full": "completed", "skip": "skipped", "fail": "failed"}
    assert statuses == {sync_id: expected[label.split("_")[1]] for label, sync_id in ids.items()}
    last = {table: new.sync_status("S", table) for table in "TUV"}
    assert {table: status["last_status"] for table, status in last.items()} == {
        "T": "skipped", "U": "completed", "V": "failed"}
    assert last["T"]["last_success_sync_id"] == ids["T_skip"]  # still the copy's last confirmation


def test_a_skip_is_a_success_for_the_tables_status_and_only_a_success_is_recorded_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    reg = store.upsert_registration("S", "T", incremental_key=None, primary_key=(), detect_deletes=False,
                                    include_columns=(), exclude_columns=())
    sync_id = store.start_job(reg, "full", "auto", None)
    with store.connect() as con:
        store.complete_job(con, reg, sync_id, {"skipped": True}, "none", status="skipped")
        with pytest.raises(ValueError, match="not 'failed'"):
            store.complete_job(con, reg, sync_id, {}, "none", status="failed")
    store.finish(sync_id)
    status = store.sync_status("S", "T")
    assert (status["last_status"], status["last_success_sync_id"]) == ("skipped", sync_id)
    assert store.get_job(sync_id)["status"] == "skipped"
