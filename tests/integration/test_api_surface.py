"""The API explains itself: registered tables with their ids, requests checked before a job exists,
errors worded in the API's terms, a JSON login told to send form fields, docs served offline."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from sfduck_emulator.settings import EmulatorSettings
from tests.integration.test_api import api, service, token, wait_for_end  # noqa: F401 (fixtures)


def test_registered_tables_and_their_ids(api: TestClient, emulator: EmulatorSettings) -> None:  # noqa: F811
    admin, schema = token(api, "ops"), emulator.schema
    assert api.get("/sync/tables", headers=admin).json() == []
    reg = api.post("/sync/tables/register", headers=admin, json={
        "schema_name": schema, "table_name": "ORDERS", "incremental_key": "UPDATED_AT"}).json()
    listed = {t["table_name"]: t for t in api.get(f"/sync/tables/{schema}", headers=admin).json()}
    assert listed["ORDERS"]["registered"] is True and listed["ORDERS"]["table_id"] == reg["table_id"]
    assert listed["data"]["registered"] is False and listed["data"]["table_id"] is None

    described = api.get(f"/sync/tables/{schema}/ORDERS", headers=admin).json()
    assert described["primary_key"] == ["ORDER_ID"] and "UPDATED_AT" in {c["name"] for c in described["columns"]}
    by_id = api.get(f"/sync/tables/status/{reg['table_id']}", headers=admin)  # not read as a table "status"
    assert by_id.status_code == 200 and by_id.json()["registration"]["table_id"] == reg["table_id"]

    [orders] = api.get("/sync/tables", headers=admin).json()
    assert orders["table_id"] == reg["table_id"] and orders["status"] == "active"
    assert orders["incremental_key"] == "UPDATED_AT" and orders["primary_key"] == ["ORDER_ID"]
    assert orders["schedule"] is None and orders["last_sync"] is None

    put = api.put(f"/schedules/{reg['table_id']}", headers=admin, json={"interval_s": 3600})
    assert put.status_code == 200, put.text
    started = api.post("/sync/start", headers=admin, json={"schema_name": schema, "table_name": "ORDERS"}).json()
    job = wait_for_end(api, admin, started["sync_id"])
    [orders] = api.get("/sync/tables", headers=admin).json()
    assert orders["schedule"] == "every 1 h" and orders["schedule_enabled"] is True
    assert orders["last_sync"]["sync_id"] == job["sync_id"] and orders["last_sync"]["status"] == "completed"
    assert orders["last_sync"]["row_count"] == job["stats"]["table_stats"]["row_count"]


def test_requests_are_checked_before_a_job_exists(api: TestClient, emulator: EmulatorSettings) -> None:  # noqa: F811
    admin, schema = token(api, "ops"), emulator.schema
    api.post("/sync/tables/register", headers=admin, json={"schema_name": schema, "table_name": "data"})
    refused = api.post("/sync/start", headers=admin,
                       json={"schema_name": schema, "table_name": "data", "strategy": "incremental"})
    assert refused.status_code == 422, refused.text
    assert "incremental_key" in refused.json()["detail"] and "--" not in refused.json()["detail"]
    assert api.get("/sync/jobs", headers=admin).json()["total"] == 0  # no job was created

    for query in ({"status": "bogus"}, {"trigger": "bogus"}):
        bad = api.get("/sync/jobs", headers=admin, params=query)
        assert bad.status_code == 422 and next(iter(query)) in bad.json()["detail"], bad.text
    assert api.get("/sync/jobs", headers=admin, params={"status": "completed"}).status_code == 200

    everything = api.post("/sync/start-all", headers=admin)  # no body at all
    assert everything.status_code == 202, everything.text
    [started] = everything.json()
    assert started["table_name"] == "data" and started["started"] is True
    wait_for_end(api, admin, started["sync_id"])


def test_errors_name_endpoints_and_fields(api: TestClient, emulator: EmulatorSettings) -> None:  # noqa: F811
    admin, schema = token(api, "ops"), emulator.schema
    refused = api.post("/sync/start", headers=admin, json={"schema_name": schema, "table_name": "data"})
    assert refused.status_code == 409
    body = refused.json()
    assert "POST /api/v1/sync/tables/register" in body["detail"] and "sfduck_core" not in body["detail"]
    assert body["remedy"] == "register" and body["facts"] == {"schema": schema, "table": "data"}
    assert body["message"] == f"{schema}.data is not registered for syncing."


def test_a_json_login_is_told_to_send_form_fields(api: TestClient) -> None:  # noqa: F811
    r = api.post("/auth/token", json={"username": "ops", "password": "x"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "form fields" in detail and "username" in detail and "password" in detail


def test_docs_are_served_without_a_network(api: TestClient) -> None:  # noqa: F811
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = api.get(page)
        assert html.status_code == 200 and "/api/v1/openapi.json" in html.text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert sources and all(src.startswith("/api/v1/") for src in sources), sources
        assert any(src.endswith(asset) for src in sources)
        for src in sources:
            served = api.get(src.removeprefix("/api/v1"))
            assert served.status_code == 200 and len(served.content) > 1000, src

