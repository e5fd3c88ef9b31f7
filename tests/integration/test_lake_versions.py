"""Time travel in a lake: a table restored to an earlier sync's version (a job of its own), and the
retention that expires old versions; through the engine, the CLI and the API, with bad input refused
without changing anything."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sfduck_core.config import Settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import JobNotFoundError, NotRegisteredError, SfduckError, SyncAlreadyRunningError
from sfduck_core.preview import row_count, sync_versions
from sfduck_core.retention import RetentionPolicy, apply_retention
from sfduck_core.service import build_service
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import env_for
from tests.integration.test_api import client_for, token, write_users
from tests.integration.test_lake import DDL, insert_rows, signature

ROOT = Path(__file__).resolve().parents[2]
ROWS = 2_000


@pytest.fixture
def target_kind() -> str:
    return "lake"


@pytest.fixture
def versions(engine: SyncEngine, sf, emulator: EmulatorSettings, source_table: Callable[..., str]
             ) -> tuple[str, str, list[dict], list[list]]:
    """A table synced three times, each version different: (schema, table, jobs, signatures)."""
    schema, table = emulator.schema, source_table(DDL, "VER")
    insert_rows(sf, schema, table, 1, ROWS, "first")
    engine.register(schema, table, incremental_key="UPDATED_AT", primary_key=["ID"], detect_deletes=True)
    jobs, signatures = [], []
    for step in range(3):
        if step:
            sf.cursor().execute(f'UPDATE "{schema}"."{table}" SET NAME = \'v{step}\', '
                                f"UPDATED_AT = '203{step}-01-01 00:00:00' WHERE ID <= {step * 100}")
            insert_rows(sf, schema, table, ROWS * (step + 1), 10, f"added {step}")
        jobs.append(engine.sync(SyncRequest(schema, table, strategy="incremental", force=True)))
        signatures.append(signature(engine, schema, table))
    assert len({str(s) for s in signatures}) == 3
    return schema, table, jobs, signatures


def job_count(engine: SyncEngine, schema: str, table: str) -> int:
    return len(engine.store.history(schema, table))


def test_a_restore_brings_back_an_earlier_version_as_a_job(engine: SyncEngine, versions, sf) -> None:
    schema, table, jobs, signatures = versions
    restored = engine.restore(schema, table, jobs[0]["sync_id"], trigger="api", started_by="ops")
    assert signature(engine, schema, table) == signatures[0]
    assert restored["strategy"] == "restore" and restored["status"] == "completed"
    assert (restored["trigger"], restored["started_by"]) == ("api", "ops")
    stats = restored["stats"]
    assert stats["restored_from"] == {"sync_id": jobs[0]["sync_id"], "snapshot_id": jobs[0]["stats"]["snapshot_id"]}
    assert stats["rows_processed"] == ROWS and stats["snapshot_id"] > jobs[2]["stats"]["snapshot_id"]
    # the restore is itself a version, and the newer versions stay readable
    assert sync_versions(engine.store, schema, table)[0]["sync_id"] == restored["sync_id"]
    assert row_count(engine.store, schema, table, snapshot_id=jobs[2]["stats"]["snapshot_id"]) == ROWS + 20
    status = engine.store.sync_status(schema, table)
    assert status["last_success_sync_id"] == restored["sync_id"]
    assert status["watermark"] == jobs[0]["stats"]["watermark_after"]

    # the next incremental starts from the restored version's watermark: the copy matches the source again
    again = engine.sync(SyncRequest(schema, table, strategy="incremental"))
    assert again["stats"].get("skipped") is not True
    assert signature(engine, schema, table) == signatures[2]


def test_a_restore_refuses_bad_requests_and_changes_nothing(engine: SyncEngine, versions, sf,
                                                           source_table: Callable[..., str], settings: Settings,
                                                           tmp_path: Path) -> None:
    schema, table, jobs, signatures = versions
    other = source_table(DDL, "OTHER")
    insert_rows(sf, schema, other, 1, 10, "other")
    engine.register(schema, other)
    other_job = engine.sync(SyncRequest(schema, other))
    before = job_count(engine, schema, table)
    refusals = [
        (lambda: engine.restore(schema, table, "no-such-sync"), JobNotFoundError, "No sync 'no-such-sync' of"),
        (lambda: engine.restore(schema, table, other_job["sync_id"]), JobNotFoundError, "pick one from its history"),
        (lambda: engine.restore(schema, "NOT_REGISTERED", jobs[0]["sync_id"]), NotRegisteredError, "not registered"),
        (lambda: engine.restore(schema, f'{table}"; DROP TABLE "{schema}"."{table}"; --', jobs[0]["sync_id"]),
         NotRegisteredError, "not registered"),
        (lambda: engine.restore(schema, "", jobs[0]["sync_id"]), SfduckError, "table name"),
        (lambda: engine.restore(schema, table, jobs[0]["sync_id"], trigger="cron"), SfduckError, "Unknown trigger"),
    ]
    for call, error, message in refusals:
        with pytest.raises(error, match=message):
            call()
    running = engine.prepare(SyncRequest(schema, table, force=True))  # holds the table like a running sync
    try:
        with pytest.raises(SyncAlreadyRunningError, match="already running"):
            engine.restore(schema, table, jobs[0]["sync_id"])
    finally:
        running.run()
    assert signature(engine, schema, table) == signatures[2]
    assert job_count(engine, schema, table) == before + 1  # the sync that held the table, nothing else

    file_engine = SyncEngine(dataclasses.replace(settings, target=None, duckdb_path=tmp_path / "file.duckdb"))
    file_engine.register(schema, table)
    with pytest.raises(SfduckError, match="Restoring an earlier version applies to a DuckLake target"):
        file_engine.restore(schema, table, jobs[0]["sync_id"])


def test_a_skipped_sync_is_no_version_of_its_own(engine: SyncEngine, versions) -> None:
    """A skip copied nothing: Preview does not offer it "as of", and a restore of it says which to pick."""
    schema, table, jobs, signatures = versions
    skipped = engine.sync(SyncRequest(schema, table, strategy="incremental"))
    assert skipped["status"] == "skipped"
    assert [j["sync_id"] for j in sync_versions(engine.store, schema, table)] == [j["sync_id"] for j in jobs[::-1]]
    with pytest.raises(SfduckError, match="was skipped .nothing had changed.* restore the completed sync before it"):
        engine.restore(schema, table, skipped["sync_id"])
    assert signature(engine, schema, table) == signatures[2]

    # nor does it count as one of the versions retention keeps: the last two completed syncs stay readable
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    apply_retention(engine.store, RetentionPolicy(keep_versions=2, keep_days=7), moment=later)
    assert [j["sync_id"] for j in sync_versions(engine.store, schema, table)] == [jobs[2]["sync_id"], jobs[1]["sync_id"]]
    assert signature(engine, schema, table) == signatures[2]


def test_retention_keeps_the_last_versions_of_each_table(engine: SyncEngine, versions) -> None:
    schema, table, jobs, signatures = versions
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)  # every snapshot is then older than a week
    policy = RetentionPolicy(keep_versions=2, keep_days=7)
    files = lambda: sorted(Path(engine.settings.storage.data_path).rglob("*.parquet"))  # noqa: E731
    files_before = files()

    preview = apply_retention(engine.store, policy, dry_run=True, moment=later)
    assert preview["snapshots_to_expire"] and "snapshots_expired" not in preview
    assert len(sync_versions(engine.store, schema, table)) == 3 and files() == files_before

    done = apply_retention(engine.store, policy, actor="ops", moment=later)
    assert done["snapshots_expired"] == len(preview["snapshots_to_expire"]) and done["files_deleted"] > 0
    assert len(files()) < len(files_before)
    kept = [job["sync_id"] for job in sync_versions(engine.store, schema, table)]
    assert kept == [jobs[2]["sync_id"], jobs[1]["sync_id"]]
    assert signature(engine, schema, table) == signatures[2]
    assert row_count(engine.store, schema, table, snapshot_id=jobs[1]["stats"]["snapshot_id"]) == ROWS + 10
    with pytest.raises(SfduckError, match="expired by retention"):
        engine.restore(schema, table, jobs[0]["sync_id"])
    audit = engine.store.audit_log(5)[0]
    assert (audit["action"], audit["actor"]) == ("lake_retention", "ops")
    assert json.loads(audit["details"])["snapshots_expired"] == done["snapshots_expired"]

    # nothing old enough under the day rule: nothing more expires
    assert apply_retention(engine.store, RetentionPolicy(keep_versions=None, keep_days=7))["snapshots_expired"] == 0


def test_restore_and_retention_through_the_api_and_the_cli(settings: Settings, versions, emulator: EmulatorSettings,
                                                          tmp_path: Path, engine: SyncEngine) -> None:
    schema, table, jobs, signatures = versions
    write_users(tmp_path / "users.yaml")
    service = build_service(dataclasses.replace(settings, users_file=tmp_path / "users.yaml"))
    try:
        api = client_for(service)
        ops, ana = token(api, "ops"), token(api, "ana")
        body = {"schema_name": schema, "table_name": table, "sync_id": jobs[1]["sync_id"]}
        assert api.post("/sync/restore", json=body, headers=ana).status_code == 403
        assert api.post("/lake/retention", json={}, headers=ana).status_code == 403
        assert signature(engine, schema, table) == signatures[2]
        refused = api.post("/sync/restore", json={**body, "sync_id": "nope"}, headers=ops)
        assert refused.status_code == 404 and "No sync 'nope'" in refused.json()["detail"]
        assert api.post("/lake/retention", json={"keep_versions": 0}, headers=ops).status_code == 422
        restored = api.post("/sync/restore", json=body, headers=ops)
        assert restored.status_code == 200, restored.text
        assert (restored.json()["strategy"], restored.json()["trigger"], restored.json()["started_by"]) == (
            "restore", "api", "ops")
        assert signature(engine, schema, table) == signatures[1]
        dry = api.post("/lake/retention", json={"keep_versions": 1, "dry_run": True}, headers=ops).json()
        assert dry["dry_run"] is True and dry["snapshots_expired"] is None
    finally:
        service.shutdown(10)

    env = env_for(emulator, tmp_path, "lake")
    cli = [sys.executable, "-m", "sfduck_core"]
    out = subprocess.run([*cli, "restore", schema, table, jobs[0]["sync_id"]], env=env, capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stats"]["restored_from"]["sync_id"] == jobs[0]["sync_id"]
    assert signature(engine, schema, table) == signatures[0]
    out = subprocess.run([*cli, "restore", schema, table, "nope"], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: No sync 'nope' of") and not out.stdout
    out = subprocess.run([*cli, "retention", "--keep-versions", "1", "--dry-run"], env=env, capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["policy"] == "keeps the last 1 version(s) of each table and every snapshot of " \
                                               "the last 7 day(s)"
