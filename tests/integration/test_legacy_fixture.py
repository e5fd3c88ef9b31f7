"""The upgrade in place, end to end: this release, started on a DuckDB file or a lake written by the
release before the metadata database (the legacy fixtures, real copies), copies their metadata into
an empty metadata database (SQLite or PostgreSQL) and syncs their tables onwards from where the old
release left them, an incremental one from its old watermark (not a full load); the API lists the
old jobs in the table's history."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sfduck_core.config import Settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.service import build_service
from sfduck_core.sqlident import qualified
from sfduck_emulator.settings import EmulatorSettings
from tests.fixtures.legacy.copies import expected, legacy_file, legacy_lake
from tests.fixtures.legacy.source import ORDERS, drop_source, source_as_left
from tests.integration.conftest import snowflake_settings
from tests.integration.test_api import client_for, token, write_users

COLUMNS = "ID, NAME, AMOUNT, UPDATED_AT"  # NOTE is excluded by the registration


@pytest.fixture
def legacy_source(sf: Any, emulator: EmulatorSettings) -> Iterator[str]:
    source_as_left(sf, emulator.schema)
    yield emulator.schema
    drop_source(sf, emulator.schema)


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each test is a first start of its own (the upgrade runs once per process and target)."""
    import sfduck_core.upgrade as upgrade

    upgrade._done.clear()
    yield
    upgrade._done.clear()


def legacy_settings(kind: str, tmp_path: Path, emulator: EmulatorSettings, metadata_url: str | None) -> Settings:
    """Settings of this release pointed at a copy of the `kind` fixture (and an empty metadata database)."""
    if kind == "file":
        legacy_file(tmp_path)
    return Settings(snowflake=snowflake_settings(emulator), duckdb_path=tmp_path / "sfduck.duckdb",
                    data_dir=tmp_path / "data", demo=False, lock_timeout_s=5.0,
                    target=legacy_lake(tmp_path) if kind == "lake" else None, metadata_url=metadata_url)


@pytest.mark.parametrize("kind", ["file", "lake"])
def test_an_incremental_sync_of_the_fixture_continues_from_its_old_watermark(
        kind: str, tmp_path: Path, emulator: EmulatorSettings, sf: Any, legacy_source: str, metadata_url: str) -> None:
    schema = legacy_source
    settings = legacy_settings(kind, tmp_path, emulator, metadata_url)
    old = next(s for s in expected(kind)["table_sync_status"] if s["table_name"] == ORDERS)
    table = qualified(schema, ORDERS)
    sf.cursor().execute(f"UPDATE {table} SET NAME = 'later', UPDATED_AT = '2024-03-01 00:00:00' WHERE ID = 5")
    sf.cursor().execute(f"INSERT INTO {table} VALUES (14, 'newest', 9.99, 'n', '2024-03-01 00:00:01')")

    engine = SyncEngine(settings)  # the first start: the old metadata is copied
    assert [j["sync_id"] for j in engine.store.history()] == [j["sync_id"] for j in expected(kind)["sync_jobs"]]
    job = engine.sync(SyncRequest(schema, ORDERS, strategy="incremental"))

    stats = job["stats"]
    assert job["status"] == "completed"
    assert stats["watermark_before"] == old["watermark"]
    assert not stats.get("full_load")
    assert (stats["rows_inserted"], stats["rows_updated"]) == (1, 1)
    assert stats["watermark_after"]["value"] == "2024-03-01 00:00:01"
    with engine.store.connect(read_only=True) as con:
        local = con.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY ID").fetchall()
    source = sf.cursor().execute(f"SELECT {COLUMNS} FROM {table} ORDER BY ID").fetchall()
    assert local == source and len(local) == old["row_count"] + 1
    assert [j["status"] for j in engine.store.history(schema, ORDERS)][:1] == ["completed"]
    assert len(engine.store.history()) == len(expected(kind)["sync_jobs"]) + 1


def test_the_api_lists_the_old_jobs_in_the_migrated_tables_history(
        tmp_path: Path, emulator: EmulatorSettings, legacy_source: str) -> None:
    write_users(tmp_path / "users.yaml")
    settings = dataclasses.replace(legacy_settings("file", tmp_path, emulator, None), users_file=tmp_path / "users.yaml")
    service = build_service(settings)
    try:
        api = client_for(service)
        page = api.get("/sync/jobs", params={"schema_name": legacy_source, "table_name": "FIX_CUSTOMERS"},
                       headers=token(api, "ana"))
    finally:
        service.shutdown(10)
    assert page.status_code == 200, page.text
    old = [j for j in expected("file")["sync_jobs"] if j["table_name"] == "FIX_CUSTOMERS"]
    body = page.json()
    assert body["total"] == len(old) == 4
    assert [(j["sync_id"], j["status"], j["trigger"], j["started_by"]) for j in body["jobs"]] == [
        (j["sync_id"], j["status"], j["trigger"], j["started_by"]) for j in old]
    assert [j["stats"]["rows_processed"] for j in body["jobs"]] == [j["stats"]["rows_processed"] for j in old]
