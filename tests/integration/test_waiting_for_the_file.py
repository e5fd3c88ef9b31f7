"""Issue 21 item 5: an analyst holding the DuckDB file (a read-only DuckDB in another process) never
stalls sfduck. Reads are served while the file is held; a sync is accepted at once and `waiting`
(naming the holder), starts when the file is let go, can be cancelled meanwhile, and fails with the
holder's name only after SFDUCK_DATA_WAIT.

Ordering, not timing: the holder lets go only when the test tells it to (or after ten minutes), so
every read that answers while the holder is still alive answered without waiting for the file."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest
from fastapi.testclient import TestClient

from sfduck_core.config import Settings
from sfduck_core.errors import StoreBusyError
from sfduck_core.preview import first_rows, run_read_only_query
from sfduck_core.service import Service, build_service
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.test_api import client_for, token, write_users
from tests.integration.test_schedules import Clock

# the analyst: opens the file read-only (retrying while sfduck still has it open), says "held",
# and lets go when told (a line on stdin), or after ten minutes
_HOLDER = """
import sys, time, duckdb
for _ in range(600):
    try:
        con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read-only")
        break
    except duckdb.IOException:
        time.sleep(0.1)
con.execute("SELECT 1").fetchone()
print("held", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
"""


class Analyst:
    """A child process holding the DuckDB file read-only until `release()`."""

    def __init__(self, path: Path, mode: str = "read-only") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"
        self.program = psutil.Process(self.proc.pid).name()

    @property
    def holding(self) -> bool:
        return self.proc.poll() is None

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def make_service(settings: Settings, tmp_path: Path, data_wait_s: float) -> Service:
    write_users(tmp_path / "users.yaml")
    # a read that waited for the file would wait as long as the holder holds it (ten minutes)
    return build_service(dataclasses.replace(settings, users_file=tmp_path / "users.yaml", lock_timeout_s=900,
                                             data_wait_s=data_wait_s))


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    svc = make_service(settings, tmp_path, data_wait_s=900)
    yield svc
    svc.shutdown(10)


def hold(service: Service) -> Analyst:
    with service.engine.store.connect():  # the file exists (a fresh one is created by the first use)
        pass
    service.engine.store.storage.release()  # the server's warm keep, so the analyst can open it now
    return Analyst(service.engine.store.path)


def until(api: TestClient, headers: dict[str, str], sync_id: str, done: Any, what: str) -> dict[str, Any]:
    """Poll the job until `done(job)`; the bound only ends a test that went wrong."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = api.get(f"/sync/status/{sync_id}", headers=headers).json()
        if done(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"sync {sync_id} never {what}: {job}")


def start_waiting(api: TestClient, admin: dict[str, str], schema: str, analyst: Analyst) -> dict[str, Any]:
    started = api.post("/sync/start", headers=admin, json={"table_name": "ORDERS", "schema_name": schema,
                                                           "force": True})
    assert started.status_code == 202, started.text
    assert analyst.holding
    return until(api, admin, started.json()["sync_id"], lambda j: j["status"] != "running"
                 and j["status"] != "pending", "left running")


def test_reads_are_served_and_a_sync_waits_until_the_analyst_lets_go(
        service: Service, emulator: EmulatorSettings) -> None:
    api = client_for(service)
    admin = token(api, "ops")
    reg = service.engine.register(emulator.schema, "ORDERS")
    first = api.post("/sync/start", headers=admin, json={"table_name": "ORDERS", "schema_name": emulator.schema})
    first_job = until(api, admin, first.json()["sync_id"], lambda j: j["status"] == "completed", "completed")
    analyst = hold(service)
    try:
        reads = {
            "jobs": api.get("/sync/jobs", headers=admin),
            "job": api.get(f"/sync/status/{first_job['sync_id']}", headers=admin),
            "status": api.get(f"/sync/tables/status/{reg.table_id}", headers=admin),
            "tables": api.get("/sync/tables", headers=admin),
            "schedules": api.get("/schedules", headers=admin),
            "health": api.get("/health"),
        }
        assert analyst.holding  # every read above answered before the analyst let go
        assert {name: r.status_code for name, r in reads.items()} == dict.fromkeys(reads, 200)
        health = reads["health"].json()
        assert health["status"] == "ok"
        assert health["duckdb"] == {"ok": True, "detail": f"held by {analyst.program} (pid {analyst.proc.pid})"}
        assert service.engine.store.synced_tables() == [(emulator.schema, "ORDERS")]  # the preview's list
        held_by = f"open in {analyst.program} (pid {analyst.proc.pid}); try again when it lets go"
        with pytest.raises(StoreBusyError, match=re.escape(held_by)):  # a preview's rows
            first_rows(service.engine.store, emulator.schema, "ORDERS")
        # the SQL box's child opens the file read-only too, which a read-only holder allows
        counted = run_read_only_query(service.engine.store.path, f'SELECT count(*) AS n FROM "{emulator.schema}"."ORDERS"')
        assert counted.table.column("n")[0].as_py() > 0
        assert analyst.holding

        job = start_waiting(api, admin, emulator.schema, analyst)
        assert job["status"] == "waiting", job
        assert f"open in {analyst.program} (pid {analyst.proc.pid})" in job["error_message"]
        listed = api.get("/sync/jobs", headers=admin, params={"status": "waiting"}).json()
        assert [j["sync_id"] for j in listed["jobs"]] == [job["sync_id"]]
        assert [j["sync_id"] for j in service.engine.store.running_jobs()] == [job["sync_id"]]
        again = api.post("/sync/start", headers=admin, json={"table_name": "ORDERS", "schema_name": emulator.schema})
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        assert analyst.holding
        analyst.release()
        done = until(api, admin, job["sync_id"], lambda j: j["status"] not in ("pending", "waiting", "running"),
                     "ended")
        assert done["status"] == "completed", done["error_message"]
        assert done["error_message"] is None
    finally:
        analyst.close()


def test_a_waiting_sync_is_cancelled_and_the_table_is_unchanged(
        service: Service, emulator: EmulatorSettings) -> None:
    api = client_for(service)
    admin = token(api, "ops")
    service.engine.register(emulator.schema, "ORDERS")
    analyst = hold(service)
    try:
        job = start_waiting(api, admin, emulator.schema, analyst)
        assert job["status"] == "waiting", job
        assert api.post(f"/sync/cancel/{job['sync_id']}", headers=admin).status_code == 200
        done = until(api, admin, job["sync_id"], lambda j: j["status"] not in ("waiting", "running"), "ended")
        assert analyst.holding  # ended while the file was still held
        assert done["status"] == "cancelled" and "Cancelled" in done["error_message"], done
    finally:
        analyst.close()
    assert service.engine.store.synced_tables() == []  # never loaded


def test_a_sync_fails_naming_the_holder_after_the_data_wait(
        settings: Settings, tmp_path: Path, emulator: EmulatorSettings) -> None:
    service = make_service(settings, tmp_path, data_wait_s=1)
    try:
        api = client_for(service)
        admin = token(api, "ops")
        service.engine.register(emulator.schema, "ORDERS")
        analyst = hold(service)
        try:
            started = api.post("/sync/start", headers=admin,
                               json={"table_name": "ORDERS", "schema_name": emulator.schema})
            assert started.status_code == 202
            done = until(api, admin, started.json()["sync_id"],
                         lambda j: j["status"] not in ("pending", "waiting", "running"), "ended")
            assert analyst.holding
            assert done["status"] == "failed", done
            assert f"open in {analyst.program} (pid {analyst.proc.pid}); waited 1 s" in done["error_message"]
        finally:
            analyst.close()
    finally:
        service.shutdown(10)


def test_the_sql_box_names_a_program_that_holds_the_file_for_writing(tmp_path: Path) -> None:
    """The DuckDB CLI opened on the file (read-write): the SQL box answers at once, naming it,
    instead of retrying as it does for the dashboard's own sync."""
    path = tmp_path / "held.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS n")
    analyst = Analyst(path, mode="read-write")
    try:
        held_by = f"open in {analyst.program} (pid {analyst.proc.pid}); try again when it lets go"
        with pytest.raises(StoreBusyError, match=re.escape(held_by)):
            run_read_only_query(path, "SELECT n FROM t", busy_retry_s=600)
        assert analyst.holding
    finally:
        analyst.close()


def test_a_scheduled_run_waits_for_the_file_quietly_and_runs_when_it_is_let_go(
        service: Service, emulator: EmulatorSettings, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    service.scheduler.clock = clock
    reg = service.engine.register(emulator.schema, "ORDERS")
    service.schedules.save(reg, cron=None, timezone="UTC", interval_s=900, strategy="full", enabled=True,
                           actor="ops", clock=clock)
    api = client_for(service)
    admin = token(api, "ops")
    analyst = hold(service)
    try:
        clock.advance(minutes=15)
        with caplog.at_level(logging.INFO):
            [(_, outcome)] = service.scheduler.tick()
            assert outcome == "started"
            sync_id = service.schedules.get(reg.table_id).last_sync_id
            job = until(api, admin, sync_id, lambda j: j["status"] not in ("pending", "running"), "waited")
            assert job["status"] == "waiting" and f"pid {analyst.proc.pid}" in job["error_message"]
            analyst.release()
            done = until(api, admin, sync_id, lambda j: j["status"] not in ("pending", "waiting", "running"),
                         "ended")
        assert done["status"] == "completed", done["error_message"]
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
        deadline = time.monotonic() + 60  # the schedule hears of the end just after the job records it
        while service.schedules.get(reg.table_id).last_outcome != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.schedules.get(reg.table_id).last_outcome == "completed"
    finally:
        analyst.close()
