"""The HTTP API in-process (the ASGI app mounted at /api/v1, as the server mounts it), against the
emulator and a real DuckDB file: the spec's flow, who may do what, and every error's status."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import yaml
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from sfduck_core.config import Settings
from sfduck_core.engine import SyncRequest
from sfduck_core.files import make_private
from sfduck_core.job_status import JOB_STATUSES
from sfduck_core.service import Service, build_service
from sfduck_core.store import JobQuery
from sfduck_core.users import hash_password
from sfduck_emulator.settings import EmulatorSettings
from sfduck_server.api import API_PREFIX, ApiPrefix, create_api
from tests.integration.conftest import TEST_DATA_ROWS

PASSWORDS = {"ops": "ops-password-1", "ana": "ana-password-1"}


def write_users(path: Path) -> None:
    path.write_text(yaml.safe_dump({"usernames": {
        "ops": {"password": hash_password(PASSWORDS["ops"], rounds=4), "roles": ["admin"]},
        "ana": {"password": hash_password(PASSWORDS["ana"], rounds=4), "roles": ["analyst"]},
    }}))
    make_private(path)


def client_for(service: Service) -> TestClient:
    return TestClient(ApiPrefix(Starlette(), create_api(lambda: service)),
                      base_url="http://testserver" + API_PREFIX)


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    write_users(tmp_path / "users.yaml")
    svc = build_service(dataclasses.replace(settings, users_file=tmp_path / "users.yaml"))
    yield svc
    svc.shutdown(10)


@pytest.fixture
def api(service: Service) -> TestClient:
    return client_for(service)


def token(api: TestClient, user: str) -> dict[str, str]:
    r = api.post("/auth/token", data={"username": user, "password": PASSWORDS[user]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 12 * 3600
    return {"Authorization": f"Bearer {body['access_token']}"}


def wait_for_end(api: TestClient, headers: dict[str, str], sync_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/sync/status/{sync_id}", headers=headers).json()
        if job["status"] not in ("pending", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"sync {sync_id} did not end")


def test_the_spec_flow(api: TestClient, emulator: EmulatorSettings) -> None:
    admin = token(api, "ops")
    schema = emulator.schema
    tables = api.get(f"/sync/tables/{schema}", headers=admin)
    assert tables.status_code == 200
    data = next(t for t in tables.json() if t["table_name"] == "data")
    assert data["row_count"] == TEST_DATA_ROWS and data["size_bytes"] > 0 and data["last_modified"]

    reg = api.post("/sync/tables/register", headers=admin, json={"table_name": "data", "schema_name": schema})
    assert reg.status_code == 200
    assert reg.json()["status"] == "active" and reg.json()["table_name"] == "data"
    table_id = reg.json()["table_id"]

    started = api.post("/sync/start", headers=admin,
                       json={"table_name": "data", "schema_name": schema, "strategy": "full"})
    assert started.status_code == 202
    assert started.json()["status"] in ("pending", "running")
    job = wait_for_end(api, admin, started.json()["sync_id"])
    assert job["status"] == "completed", job["error_message"]
    assert job["table_id"] == table_id and job["trigger"] == "api" and job["started_by"] == "ops"
    stats = job["stats"]
    assert stats["rows_processed"] == stats["total_rows"] == TEST_DATA_ROWS
    assert stats["table_stats"]["row_count"] == TEST_DATA_ROWS and stats["table_stats"]["size_bytes"] > 0
    assert job["completed_at"] and job["progress"] is None

    second = api.post("/sync/start", headers=admin, json={"table_name": "data", "schema_name": schema,
                                                          "strategy": "full", "force": True})
    wait_for_end(api, admin, second.json()["sync_id"])
    status = api.get(f"/sync/tables/status/{table_id}", headers=admin, params={"limit": 1})
    assert status.status_code == 200
    body = status.json()
    assert body["total"] == 2 and [j["sync_id"] for j in body["jobs"]] == [second.json()["sync_id"]]
    assert body["sync_status"]["last_status"] == "completed"
    older = api.get(f"/sync/tables/status/{table_id}", headers=admin, params={"limit": 1, "offset": 1}).json()
    assert [j["sync_id"] for j in older["jobs"]] == [started.json()["sync_id"]]

    gone = api.delete(f"/sync/tables/{schema}/data", headers=admin)
    assert gone.status_code == 200 and gone.json()["status"] == "inactive"
    assert api.get(f"/sync/tables/status/{table_id}", headers=admin).json()["total"] == 2  # history stays
    refused = api.post("/sync/start", headers=admin, json={"table_name": "data", "schema_name": schema})
    assert refused.status_code == 409 and "not registered" in refused.json()["detail"]


def test_tokens_roles_and_throttling(api: TestClient, service: Service, emulator: EmulatorSettings) -> None:
    schema = emulator.schema
    assert api.get(f"/sync/tables/{schema}").status_code == 401
    forged = jwt.encode({"sub": "ops", "sid": "x", "exp": time.time() + 60, "pwd": "y"}, "k" * 40, "HS256")
    r = api.get("/sync/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    analyst = token(api, "ana")
    assert api.get("/sync/jobs", headers=analyst).status_code == 200
    for method, path, body in (("post", "/sync/tables/register", {"table_name": "data", "schema_name": schema}),
                               ("post", "/sync/start", {"table_name": "data", "schema_name": schema}),
                               ("delete", f"/sync/tables/{schema}/data", None),
                               ("post", "/sync/cancel/some-id", None)):
        r = api.request(method.upper(), path, headers=analyst, json=body)
        assert r.status_code == 403, (path, r.text)
        assert "admin role" in r.json()["detail"]

    # a token dies with its expiry and with a password change
    admin = token(api, "ops")
    clock = service.tokens.clock
    service.tokens.clock = lambda: clock() + 13 * 3600
    try:
        assert api.get("/sync/jobs", headers=admin).status_code == 401
    finally:
        service.tokens.clock = clock
    assert api.get("/sync/jobs", headers=admin).status_code == 200
    users = yaml.safe_load(service.settings.users_file.read_text())
    users["usernames"]["ops"]["password"] = hash_password("a-new-password-2", rounds=4)
    service.settings.users_file.write_text(yaml.safe_dump(users))
    later = time.time() + 5
    os.utime(service.settings.users_file, (later, later))
    assert api.get("/sync/jobs", headers=admin).status_code == 401

    wrong = api.post("/auth/token", data={"username": "ana", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.json()["detail"]
    codes = [api.post("/auth/token", data={"username": "ana", "password": "nope"}).status_code for _ in range(6)]
    assert codes[-1] == 429
    throttled = api.post("/auth/token", data={"username": "ana", "password": PASSWORDS["ana"]})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert "Too many failed logins" in throttled.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body", "code", "says"), [
    ("post", "/sync/tables/register", {"table_name": "NO_SUCH_TABLE", "schema_name": "{schema}"}, 404,
     "NO_SUCH_TABLE"),
    ("post", "/sync/tables/register", {"table_name": "ORDERS\x00", "schema_name": "{schema}"}, 400, ""),
    ("post", "/sync/start", {"table_name": "ORDERS", "schema_name": "{schema}", "strategy": "sideways"}, 422,
     "strategy"),
    ("post", "/sync/start", {"table_name": "ORDERS", "schema_name": "{schema}", "where": "1=1; DROP TABLE x"},
     400, ""),
    ("post", "/sync/start", {"table_name": "ORDERS"}, 422, "schema_name"),
    ("get", "/sync/status/no-such-job", None, 404, "No sync job"),
    ("post", "/sync/cancel/no-such-job", None, 404, "No sync job"),
    ("get", "/sync/tables/status/no-such-table", None, 404, "No registered table"),
    ("get", "/sync/jobs?limit=0", None, 422, "limit"),
    ("put", "/schedules/{table_id}", {"cron": "61 * * * *"}, 400, "cron"),
    ("put", "/schedules/{table_id}", {"cron": "0 * * * *", "timezone": "Mars/Olympus"}, 400, "time zone"),
    ("put", "/schedules/{table_id}", {"cron": "0 * * * *", "interval_s": 600}, 400, "not both"),
])
def test_errors_are_json_with_the_right_status(api: TestClient, service: Service, emulator: EmulatorSettings,
                                               method: str, path: str, body: dict | None, code: int,
                                               says: str) -> None:
    admin = token(api, "ops")
    reg = service.engine.register(emulator.schema, "ORDERS")
    before = service.engine.store.find_jobs(JobQuery())[1]
    fill = {"schema": emulator.schema, "table_id": reg.table_id}
    if body:
        body = {k: v.format(**fill) if isinstance(v, str) else v for k, v in body.items()}
    r = api.request(method.upper(), path.format(**fill), headers=admin, json=body)
    assert r.status_code == code, r.text
    assert isinstance(r.json()["detail"], str) and says in r.json()["detail"]
    assert service.engine.store.find_jobs(JobQuery())[1] == before  # nothing started or changed


def test_a_sync_already_running_is_409_and_cancel_ends_it(api: TestClient, service: Service,
                                                          emulator: EmulatorSettings) -> None:
    admin = token(api, "ops")
    service.engine.register(emulator.schema, "ORDERS")
    held = service.engine.prepare(SyncRequest(emulator.schema, "ORDERS"))  # a job that is running
    r = api.post("/sync/start", headers=admin, json={"table_name": "ORDERS", "schema_name": emulator.schema})
    assert r.status_code == 409 and "already running" in r.json()["detail"]
    cancelled = api.post(f"/sync/cancel/{held.sync_id}", headers=admin)
    assert cancelled.status_code == 200
    with pytest.raises(Exception, match="cancelled"):
        held.run()
    assert api.get(f"/sync/status/{held.sync_id}", headers=admin).json()["status"] == "cancelled"
    again = api.post(f"/sync/cancel/{held.sync_id}", headers=admin)
    assert again.status_code == 400 and "not running" in again.json()["detail"]


def test_jobs_are_filtered_and_paged(api: TestClient, service: Service, emulator: EmulatorSettings) -> None:
    admin = token(api, "ops")
    for table in ("EMPTY_TABLE", "Mixed Case"):
        service.engine.register(emulator.schema, table)
    service.engine.sync(SyncRequest(emulator.schema, "EMPTY_TABLE"))  # from the command line
    ids = [api.post("/sync/start", headers=admin, json={"table_name": t, "schema_name": emulator.schema,
                                                        "force": True}).json()["sync_id"]
           for t in ("EMPTY_TABLE", "Mixed Case")]
    for sync_id in ids:
        wait_for_end(api, admin, sync_id)
    page = api.get("/sync/jobs", headers=admin, params={"trigger": "api", "limit": 1}).json()
    assert page["total"] == 2 and len(page["jobs"]) == 1 and page["jobs"][0]["sync_id"] == ids[-1]
    assert api.get("/sync/jobs", headers=admin, params={"trigger": "cli"}).json()["total"] == 1
    assert api.get("/sync/jobs", headers=admin, params={"table_name": "Mixed Case"}).json()["total"] == 1
    assert api.get("/sync/jobs", headers=admin, params={"since": "2999-01-01T00:00:00"}).json()["total"] == 0
    assert api.get("/sync/jobs", headers=admin, params={"started_by": "ops"}).json()["total"] == 2


def test_a_sync_that_found_nothing_changed_is_listed_as_skipped(api: TestClient, service: Service,
                                                                emulator: EmulatorSettings) -> None:
    admin = token(api, "ops")
    reg = service.engine.register(emulator.schema, "EMPTY_TABLE")
    body = {"table_name": "EMPTY_TABLE", "schema_name": emulator.schema}
    first = wait_for_end(api, admin, api.post("/sync/start", headers=admin, json=body).json()["sync_id"])
    second = wait_for_end(api, admin, api.post("/sync/start", headers=admin, json=body).json()["sync_id"])
    assert (first["status"], second["status"]) == ("completed", "skipped")
    skipped = api.get("/sync/jobs", headers=admin, params={"status": "skipped"}).json()
    assert [j["sync_id"] for j in skipped["jobs"]] == [second["sync_id"]]
    assert api.get("/sync/jobs", headers=admin, params={"status": "completed"}).json()["total"] == 1
    table = api.get(f"/sync/tables/status/{reg.table_id}", headers=admin).json()["sync_status"]
    assert table["last_status"] == "skipped" and table["last_success_sync_id"] == second["sync_id"]
    refused = api.get("/sync/jobs", headers=admin, params={"status": "done"})
    assert refused.status_code == 422 and "skipped" in refused.text
    documented = api.get("/openapi.json").json()["components"]["schemas"]["JobOut"]["properties"]["status"]
    assert tuple(documented["enum"]) == JOB_STATUSES and "nothing had changed" in documented["description"]


def test_unreachable_snowflake_is_503(tmp_path: Path, settings: Settings) -> None:
    write_users(tmp_path / "users.yaml")
    dead = dataclasses.replace(settings.snowflake, port=1, host="127.0.0.1", login_timeout=3)
    svc = build_service(dataclasses.replace(settings, snowflake=dead, users_file=tmp_path / "users.yaml"))
    api = client_for(svc)
    admin = token(api, "ops")
    started = time.monotonic()
    r = api.get("/sync/tables/ANY_SCHEMA", headers=admin)
    assert r.status_code == 503 and "reach" in r.json()["detail"].lower()
    assert time.monotonic() - started < 30
    health = api.get("/health")
    assert health.status_code == 503
    assert health.json()["duckdb"]["ok"] and not health.json()["snowflake"]["ok"]


def test_health_needs_no_token(api: TestClient) -> None:
    r = api.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_schedules_through_the_api(api: TestClient, service: Service, emulator: EmulatorSettings) -> None:
    admin, analyst = token(api, "ops"), token(api, "ana")
    reg = service.engine.register(emulator.schema, "ORDERS")
    saved = api.put(f"/schedules/{reg.table_id}", headers=admin,
                    json={"cron": "*/15 * * * *", "timezone": "Europe/Paris", "strategy": "full"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["enabled"] and saved.json()["next_run_at"] and saved.json()["updated_by"] == "ops"
    assert api.put(f"/schedules/{reg.table_id}", headers=analyst, json={"interval_s": 600}).status_code == 403
    assert [s["table_name"] for s in api.get("/schedules", headers=analyst).json()] == ["ORDERS"]
    paused = api.post(f"/schedules/{reg.table_id}/pause", headers=admin).json()
    assert paused["enabled"] is False
    assert api.post(f"/schedules/{reg.table_id}/resume", headers=admin).json()["enabled"] is True
    assert api.delete(f"/schedules/{reg.table_id}", headers=admin).status_code == 200
    assert api.get("/schedules", headers=admin).json() == []
    actions = [entry["action"] for entry in service.engine.store.audit_log()]
    assert actions[:4] == ["schedule.delete", "schedule.resume", "schedule.pause", "schedule.save"]
