"""The scheduler with an injected clock, driving real syncs through the process's executor: due runs,
runs skipped while one is running, one catch-up run after downtime, auto-pause after repeated
failures, and the notifications a failure and a pause send to a receiver on loopback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sfduck_core.config import Settings
from sfduck_core.engine import SyncRequest
from sfduck_core.metadata.tables import sync_jobs
from sfduck_core.service import Service, build_service
from sfduck_core.store import JobQuery
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.test_api import write_users

START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class Receiver:
    """A webhook on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(settings: Settings, tmp_path: Path, receiver: Receiver, clock: Clock) -> Iterator[Service]:
    write_users(tmp_path / "users.yaml")
    svc = build_service(dataclasses.replace(settings, users_file=tmp_path / "users.yaml",
                                            notify_urls=(receiver.url,), schedule_failure_limit=3))
    svc.scheduler.clock = clock
    yield svc
    svc.shutdown(10)


def wait_idle(service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while service.syncs.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not service.syncs.running()


def test_due_runs_start_and_the_next_run_follows_the_cron(service: Service, emulator: EmulatorSettings,
                                                           clock: Clock) -> None:
    reg = service.engine.register(emulator.schema, "EMPTY_TABLE")
    saved = service.schedules.save(reg, cron="*/15 * * * *", timezone="UTC", interval_s=None, strategy="full",
                                   enabled=True, actor="ops", clock=clock)
    assert saved.next_run_at == START + dt.timedelta(minutes=15)
    assert service.scheduler.tick() == []  # not due yet
    clock.advance(minutes=15)
    [(schedule, outcome)] = service.scheduler.tick()
    assert outcome == "started"
    wait_idle(service)
    after = service.schedules.get(reg.table_id)
    assert after.next_run_at == START + dt.timedelta(minutes=30) and after.last_outcome == "completed"
    [job] = service.engine.store.find_jobs(JobQuery(trigger="schedule"))[0]
    assert job["status"] == "completed" and job["started_by"] == "scheduler"


def test_a_run_due_while_one_is_running_is_skipped(service: Service, emulator: EmulatorSettings,
                                                   clock: Clock) -> None:
    reg = service.engine.register(emulator.schema, "ORDERS")
    service.schedules.save(reg, cron=None, timezone="UTC", interval_s=600, strategy="full", enabled=True,
                           actor="ops", clock=clock)
    held = service.engine.prepare(SyncRequest(emulator.schema, "ORDERS"))  # someone's sync is running
    clock.advance(minutes=10)
    [(_, outcome)] = service.scheduler.tick()
    assert outcome == "skipped"
    skipped = service.schedules.get(reg.table_id)
    assert skipped.last_outcome.startswith("skipped") and "already running" in skipped.last_outcome
    assert skipped.next_run_at == clock.now + dt.timedelta(minutes=10) and skipped.consecutive_failures == 0
    assert held.run()["status"] == "completed"
    assert service.engine.store.find_jobs(JobQuery(trigger="schedule"))[1] == 0


@pytest.mark.parametrize("timing", [{"cron": "*/5 * * * * *", "interval_s": None}, {"cron": None, "interval_s": 5}])
def test_no_schedule_runs_more_often_than_the_minimum_whatever_is_stored(
        service: Service, emulator: EmulatorSettings, clock: Clock, timing: dict) -> None:
    """A timing validation refuses (a seconds field, a 5 s interval), written straight into the
    metadata as an older version or a hand edit could have: the scheduler still starts a run at most
    once every MIN_INTERVAL_S, ticked every 5 s of injected time for three minutes."""
    reg = service.engine.register(emulator.schema, "EMPTY_TABLE")
    service.schedules.save(reg, cron="* * * * *", timezone="UTC", interval_s=None, strategy="full", enabled=True,
                           actor="ops", clock=clock)
    service.schedules.update(reg.table_id, **timing, next_run_at=clock.now)
    started = []
    for _ in range(36):
        if [outcome for _, outcome in service.scheduler.tick()] == ["started"]:
            started.append(clock.now)
        wait_idle(service)
        clock.advance(seconds=5)
    assert started == [START + dt.timedelta(seconds=60 * n) for n in range(3)]
    assert service.engine.store.find_jobs(JobQuery(trigger="schedule"))[1] == 3


def test_runs_missed_while_down_become_one_catch_up_run(service: Service, emulator: EmulatorSettings,
                                                        clock: Clock) -> None:
    reg = service.engine.register(emulator.schema, "EMPTY_TABLE")
    service.schedules.save(reg, cron="0 * * * *", timezone="Europe/Paris", interval_s=None, strategy="full",
                           enabled=True, actor="ops", clock=clock)
    clock.advance(hours=30)  # the server was down for 30 due runs
    outcomes = service.scheduler.tick()
    assert [o for _, o in outcomes] == ["started"]
    wait_idle(service)
    assert service.scheduler.tick() == []  # no backlog
    assert service.schedules.get(reg.table_id).next_run_at == (clock.now + dt.timedelta(hours=1)).replace(minute=0)
    assert service.engine.store.find_jobs(JobQuery(trigger="schedule"))[1] == 1


def test_repeated_failures_pause_the_schedule_and_notify(service: Service, emulator: EmulatorSettings, sf,
                                                         source_table, clock: Clock, receiver: Receiver) -> None:
    table = source_table("ID NUMBER(38,0)", "DOOMED")
    reg = service.engine.register(emulator.schema, table)
    service.schedules.save(reg, cron=None, timezone="UTC", interval_s=300, strategy="full", enabled=True,
                           actor="ops", clock=clock)
    sf.cursor().execute(f'DROP TABLE "{emulator.schema}"."{table}"')
    for _ in range(3):
        clock.advance(minutes=5)
        [(_, outcome)] = service.scheduler.tick()
        assert outcome == "started"
        wait_idle(service)
    paused = service.schedules.get(reg.table_id)
    assert not paused.enabled and paused.consecutive_failures == 3
    assert "Paused after 3 consecutive failed runs" in paused.paused_reason
    clock.advance(minutes=5)
    assert service.scheduler.tick() == []  # paused: nothing more starts
    messages = receiver.wait_for(4)
    titles = [m.get("title", "") for m in messages]
    assert sum("failed" in t for t in titles) == 3 and any("paused" in t for t in titles)
    assert all(m.get("type") in ("failure", "warning") for m in messages)
    resumed = service.schedules.set_enabled(reg.table_id, True, "ops", clock=clock)
    assert resumed.enabled and resumed.consecutive_failures == 0 and resumed.paused_reason is None


def test_a_failing_receiver_never_fails_a_sync(settings: Settings, tmp_path: Path, emulator: EmulatorSettings
                                               ) -> None:
    write_users(tmp_path / "users.yaml")
    svc = build_service(dataclasses.replace(settings, users_file=tmp_path / "users.yaml",
                                            notify_urls=("json://127.0.0.1:1/nobody",), notify_on_success=True))
    svc.engine.register(emulator.schema, "EMPTY_TABLE")
    bg = svc.syncs.start(SyncRequest(emulator.schema, "EMPTY_TABLE", trigger="api", started_by="ops"))
    assert bg.finished.wait(60) and bg.error is None and bg.result["status"] == "completed"
    svc.shutdown(5)


def test_retention_prunes_old_finished_jobs_but_never_a_tables_last_ones(service: Service,
                                                                         emulator: EmulatorSettings) -> None:
    service.engine.register(emulator.schema, "EMPTY_TABLE")
    first = service.engine.sync(SyncRequest(emulator.schema, "EMPTY_TABLE"))
    last = service.engine.sync(SyncRequest(emulator.schema, "EMPTY_TABLE", force=True))
    store = service.engine.store
    with store.metadata.write() as conn:  # both a year old
        for job in store.history():
            conn.execute(sync_jobs.update().where(sync_jobs.c.sync_id == job["sync_id"]).values(
                created_at=dt.datetime.fromisoformat(job["created_at"]) - dt.timedelta(days=365)))
    assert store.prune_jobs(dt.datetime.now(dt.UTC) - dt.timedelta(days=30)) == 1
    assert [j["sync_id"] for j in store.history()] == [last["sync_id"]]  # the last one stays
    assert store.get_job(first["sync_id"]) is None


def test_the_api_docs_are_served_under_the_prefix(service: Service) -> None:
    from fastapi.testclient import TestClient
    from starlette.applications import Starlette

    from sfduck_server.api import API_PREFIX, ApiPrefix, create_api

    client = TestClient(ApiPrefix(Starlette(), create_api(lambda: service)))
    docs = client.get(f"{API_PREFIX}/docs")
    assert docs.status_code == 200 and f"{API_PREFIX}/openapi.json" in docs.text
    spec = client.get(f"{API_PREFIX}/openapi.json").json()
    assert "/sync/start" in spec["paths"] and spec["servers"] == [{"url": API_PREFIX}]
