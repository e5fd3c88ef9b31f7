"""The upgrade in place (sfduck_core.upgrade): a Store opened on a DuckDB file or a lake written by
the release before the metadata database (the legacy fixtures, real copies) shows everything that
release did, from a metadata database on SQLite or PostgreSQL; once; never merged into another
history."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from sfduck_core.config import Target
from sfduck_core.errors import ConfigError
from sfduck_core.metadata import MetadataDatabase, redact_url
from sfduck_core.metadata.legacy import migrated_to, read_legacy_metadata
from sfduck_core.metadata.tables import data_source, legacy_upgrades, schedules, table_sync_status
from sfduck_core.store import Store
from sfduck_core.upgrade import upgrade_in_place
from tests.fixtures.legacy.copies import expected, legacy_file, legacy_lake

KINDS = ("file", "lake")


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each test is a first start of its own (the upgrade runs once per process and target)."""
    import sfduck_core.upgrade as upgrade

    upgrade._done.clear()
    yield
    upgrade._done.clear()


def new_process() -> None:
    import sfduck_core.upgrade as upgrade

    upgrade._done.clear()


def fixture_target(kind: str, folder: Path) -> tuple[Path, Target | None]:
    """(the Store's path, its target) for a writable copy of the `kind` fixture in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        return legacy_file(folder), None
    return folder / "state.duckdb", legacy_lake(folder)


def open_store(kind: str, folder: Path, metadata_url: str) -> Store:
    path, target = fixture_target(kind, folder)
    return Store(path, lock_timeout_s=5.0, target=target, metadata_url=metadata_url)


@contextlib.contextmanager
def data(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    with store.storage.connect(read_only=True) as con:
        yield con


def instant(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    value = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def rows_of(db: MetadataDatabase, table: sa.Table) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def assert_same_rows(want: list[dict[str, Any]], got: list[dict[str, Any]], key: str) -> None:
    assert sorted(r[key] for r in got) == sorted(r[key] for r in want)
    by_key = {r[key]: r for r in got}
    for row in want:
        mine = by_key[row[key]]
        wrong = {c: (v, mine[c]) for c, v in row.items() if c in mine
                 and not (instant(v) == instant(mine[c]) if c.endswith(("_at", "_modified")) else v == mine[c])}
        assert not wrong, (row[key], wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_on_the_old_target_shows_everything_the_old_release_did(
        kind: str, tmp_path: Path, metadata_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(kind, tmp_path, metadata_url)
    oracle = expected(kind)

    line = capsys.readouterr().err.strip().splitlines()
    assert line == [f"Upgraded the {store.target.describe()}: copied its metadata from an earlier release into "
                    f"{redact_url(metadata_url)} (3 registrations, 7 jobs, 3 table statuses, 2 schedules, "
                    "7 audit entries, 1 data source claims); the old rows were left in place."]

    regs = [{**r.as_dict(), "primary_key": list(r.primary_key), "include_columns": list(r.include_columns),
             "exclude_columns": list(r.exclude_columns)} for r in store.list_registrations(include_inactive=True)]
    assert_same_rows(oracle["allowed_tables"], regs, "table_id")

    jobs = store.history()
    with data(store) as con:
        snapshots = store.storage.sync_snapshots(con) if store.storage.capabilities.snapshots else {}
    assert [j["sync_id"] for j in jobs] == [j["sync_id"] for j in oracle["sync_jobs"]]  # newest first
    assert sorted(j["status"] for j in jobs) == ["cancelled", "completed", "completed", "completed", "completed",
                                                  "failed", "skipped"]
    for want, got in zip(oracle["sync_jobs"], jobs, strict=True):
        stats = dict(got["stats"])
        snapshot = stats.pop("snapshot_id", None)
        assert stats == want["stats"], want["sync_id"]  # rows, durations, watermarks before and after
        # a lake's completed job names the snapshot its commit made, as the old release's labels say
        assert snapshot == (snapshots.get(want["sync_id"]) if want["status"] == "completed" else None)
        assert (snapshot is not None) == (kind == "lake" and want["status"] == "completed")
        assert_same_rows([{k: v for k, v in want.items() if k != "stats"}], [got], "sync_id")

    assert_same_rows(oracle["table_sync_status"], rows_of(store.metadata, table_sync_status), "table_id")
    orders = store.sync_status(oracle["allowed_tables"][2]["schema_name"], "FIX_ORDERS")
    assert orders is not None and orders["watermark"]["value"] == "2024-02-01 00:00:05"
    columns = {c.name for c in schedules.columns}
    assert_same_rows([{k: v for k, v in s.items() if k in columns} for s in oracle["schedules"]],
                     rows_of(store.metadata, schedules), "table_id")
    assert_same_rows(oracle["data_source"], rows_of(store.metadata, data_source), "label")

    audit = store.audit_log()
    assert [(instant(a["changed_at"]), a["action"], a["actor"], a["table_id"]) for a in audit] == [
        (instant(a["changed_at"]), a["action"], a["actor"], a["table_id"]) for a in oracle["audit_log"]]
    assert [json.loads(a["details"]) if a["details"] else None for a in audit] == [
        json.loads(a["details"]) if a["details"] else None for a in oracle["audit_log"]]

    # the data target is marked, its old rows left for a rollback to the old release
    with data(store) as con:
        assert migrated_to(con) == redact_url(metadata_url)
        assert read_legacy_metadata(con) is None
        assert con.execute("SELECT count(*) FROM sfduck_meta.sync_jobs").fetchone()[0] == 7


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_start_does_not_migrate_again_nor_open_the_data(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    store = open_store(kind, tmp_path / "data", url)
    assert "Upgraded the" in capsys.readouterr().err
    store.metadata.registrations.audit("later", "ann")  # the new release carries on
    with store.metadata.read() as conn:
        before = dict(conn.execute(sa.select(legacy_upgrades)).mappings().one())
    assert before["copied"]["sync_jobs"] == 7 and before["marked_at"] is not None

    store.storage.release()
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)  # the data is gone: a start that opened it would fail or re-create it
    new_process()
    again = Store(tmp_path / "data" / ("sfduck.duckdb" if kind == "file" else "state.duckdb"), lock_timeout_s=5.0,
                  target=store.target, metadata_url=url)
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "data").exists()  # the single check was the metadata's record
    assert len(again.history()) == 7 and again.audit_log(1)[0]["action"] == "later"
    with again.metadata.read() as conn:
        assert dict(conn.execute(sa.select(legacy_upgrades)).mappings().one()) == before


def test_a_metadata_database_holding_other_rows_refuses_and_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    first = open_store("file", tmp_path / "one", url)
    held = {name: rows_of(first.metadata, table) for name, table in
            (("jobs", sa.table("sync_jobs", sa.column("sync_id"), sa.column("status"))),
             ("statuses", table_sync_status), ("upgrades", legacy_upgrades))}

    path, target = fixture_target("lake", tmp_path / "two")
    with pytest.raises(ConfigError) as refused:
        Store(path, lock_timeout_s=5.0, target=target, metadata_url=url)
    message = str(refused.value)
    assert "holds metadata of an earlier sfduck release" in message
    assert ("already holds other rows (3 registrations, 7 jobs, 3 table statuses, 2 schedules, 7 audit entries, "
            "1 data source claims)") in message
    assert "does not merge two histories" in message and "nothing was changed" in message
    assert {name: rows_of(first.metadata, table) for name, table in
            (("jobs", sa.table("sync_jobs", sa.column("sync_id"), sa.column("status"))),
             ("statuses", table_sync_status), ("upgrades", legacy_upgrades))} == held
    with contextlib.closing(duckdb.connect()) as con:
        from sfduck_core.storage import lake_setup_sql

        for sql in lake_setup_sql(target, read_only=True):
            con.execute(sql)
        assert migrated_to(con) is None and read_legacy_metadata(con) is not None  # not marked
    # and it keeps refusing (no start of this process pretends it was done)
    with pytest.raises(ConfigError):
        Store(path, lock_timeout_s=5.0, target=target, metadata_url=url)


def test_two_copies_of_one_file_on_one_metadata_database_copy_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Identical rows are not "other" rows: the second copy is marked, nothing is inserted twice."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    first = open_store("file", tmp_path / "one", url)
    second = open_store("file", tmp_path / "two", url)
    assert capsys.readouterr().err.count("Upgraded the") == 2
    assert len(second.history()) == len(first.history()) == 7
    assert len(second.audit_log()) == 7
    with data(second) as con:
        assert migrated_to(con) == url


def test_a_crash_before_the_mark_marks_at_the_next_start_without_copying_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    store = open_store("file", tmp_path / "data", url)
    # the state a crash between the metadata's COMMIT and the target's mark leaves
    with store.storage.connect() as con:
        con.execute("DROP TABLE sfduck_meta.migrated_to")
    with store.metadata.write() as conn:
        conn.execute(legacy_upgrades.update().values(marked_at=None))
    store.metadata.registrations.audit("later", "ann")  # and the new release ran meanwhile

    new_process()
    line = upgrade_in_place(store.storage, store.metadata)
    assert line is not None and "7 jobs" in line
    assert len(store.history()) == 7 and len(store.audit_log()) == 8
    with data(store) as con:
        assert migrated_to(con) == url


def test_a_copy_that_fails_half_way_leaves_nothing_copied(tmp_path: Path) -> None:
    """One metadata transaction: rows the database refuses late (two running jobs of one table,
    after registrations and schedules were inserted) roll everything back; the target stays unmarked."""
    path = legacy_file(tmp_path)
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute("UPDATE sfduck_meta.sync_jobs SET status = 'running' WHERE table_name = 'FIX_CUSTOMERS'")
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    with pytest.raises(sa.exc.IntegrityError):
        Store(path, lock_timeout_s=5.0, metadata_url=url)
    db = MetadataDatabase(url)
    for name in ("allowed_tables", "schedules", "sync_jobs", "audit_log", "data_source", "legacy_upgrades"):
        with db.read() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() == 0, name
    with contextlib.closing(duckdb.connect(str(path), read_only=True)) as con:
        assert migrated_to(con) is None


def test_a_job_the_old_release_left_running_is_copied_then_settled_as_stopped(tmp_path: Path) -> None:
    path = legacy_file(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process of this machine that has ended, as the old server had
    orders = next(r for r in expected("file")["allowed_tables"] if r["table_name"] == "FIX_ORDERS")
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute("INSERT INTO sfduck_meta.sync_jobs (sync_id, table_id, schema_name, table_name, strategy, "
                    "transport, status, created_at, started_at, stats, pid, host, process_started, trigger) "
                    "VALUES ('left-running', ?, ?, 'FIX_ORDERS', 'incremental', 'auto', 'running', now(), now(), "
                    "'{}', ?, ?, 1.0, 'api')", [orders["table_id"], orders["schema_name"], gone.pid,
                                                 socket.gethostname()])
    store = Store(path, lock_timeout_s=5.0, metadata_url=f"sqlite:///{tmp_path / 'meta.sqlite'}")
    assert store.get_job("left-running")["status"] == "running"  # copied as it was
    store.reap_dead_jobs()
    job = store.get_job("left-running")
    assert job["status"] == "failed"
    assert job["error_message"].startswith(f"The server stopped during this sync (process {gone.pid} ended")


def test_a_target_held_by_another_process_is_looked_at_by_the_next_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The first start does not fail on a busy file (it says so, after a short wait); the next one copies."""
    import sys

    path = legacy_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with caplog.at_level("WARNING", logger="sfduck_core.store"):
            store = Store(path, lock_timeout_s=1.0, metadata_url=url)
        assert "could not look for metadata of an earlier release" in caplog.text
        assert store.history() == []
    finally:
        holder.communicate("")
    again = Store(path, lock_timeout_s=1.0, metadata_url=url)  # the next Store, even in this process
    assert len(again.history()) == 7


STARTER = """
import sys
from pathlib import Path
from sfduck_core.config import parse_target
from sfduck_core.store import Store
lake, url = Path(sys.argv[1]), sys.argv[2]
target = parse_target(f"ducklake:sqlite:{lake / 'catalog.sqlite'}", str(lake / "data"), Path)
print("ready", flush=True)
sys.stdin.readline()  # every starter is up: go together
Store(lake.parent / "state.duckdb", lock_timeout_s=30.0, target=target, metadata_url=url)
"""


def test_servers_starting_together_copy_once(tmp_path: Path, metadata_url: str) -> None:
    """Four processes start on one old lake and one metadata database at the same moment: one
    copies (one line), the others find it copied; every start succeeds."""
    import os
    import sys

    _, target = fixture_target("lake", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    starters = [subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path / "lake"), metadata_url], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
    for starter in starters:
        assert starter.stdout.readline().strip() == "ready"
    for starter in starters:
        starter.stdin.write("go\n")
        starter.stdin.flush()
    results = [starter.communicate(timeout=300) for starter in starters]
    assert [s.returncode for s in starters] == [0] * 4, [err for _, err in results]
    assert sum(err.count("Upgraded the") for _, err in results) == 1, [err for _, err in results]
    db = MetadataDatabase(metadata_url)
    assert len(db.jobs.history()) == 7 and len(db.registrations.audit_log()) == 7
    with contextlib.closing(duckdb.connect()) as con:
        from sfduck_core.storage import lake_setup_sql

        for sql in lake_setup_sql(target, read_only=True):
            con.execute(sql)
        assert migrated_to(con) == redact_url(metadata_url)
        assert con.execute("SELECT count(*) FROM sfduck_meta.migrated_to").fetchone()[0] == 1
