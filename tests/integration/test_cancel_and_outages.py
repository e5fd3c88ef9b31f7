"""Issue 9 item 10: outages end in bounded time, a whole sync has a time limit, an admin can cancel."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfduck_core.config import Settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SourceError, SyncCancelledError
from sfduck_core.progress import SyncProgress
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import TEST_DATA_ROWS, env_for

ROOT = Path(__file__).resolve().parents[2]


def synced_once(engine: SyncEngine, schema: str) -> None:
    engine.register(schema, "data")
    assert engine.sync(SyncRequest(schema, "data"))["status"] == "completed"


def local_count(engine: SyncEngine, schema: str) -> int:
    with engine.store.connect() as con:
        return engine.store.storage.count_rows(con, schema, "data")


@pytest.mark.parametrize("transport", ["stage", "arrow"])
def test_an_admin_cancels_a_running_sync_from_another_process(engine: SyncEngine, emulator: EmulatorSettings,
                                                              tmp_path: Path, transport: str, target_kind: str) -> None:
    schema = emulator.schema
    synced_once(engine, schema)
    env = env_for(emulator, tmp_path, target_kind)
    env["SFDUCK_DUCKDB_PATH"] = str(engine.settings.duckdb_path)
    cancelled: list[str] = []

    def cancel_from_the_cli(p: SyncProgress) -> None:
        if p.phase == "unloading" and not cancelled:
            out = subprocess.run([sys.executable, "-m", "sfduck_core", "cancel", p.sync_id], env=env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            cancelled.append(json.loads(out.stdout)["sync_id"])

    with pytest.raises(SyncCancelledError, match="Cancelled by an admin"):
        engine.sync(SyncRequest(schema, "data", transport=transport, force=True), cancel_from_the_cli)
    job = engine.store.get_job(cancelled[0])
    assert job["status"] == "cancelled" and "table was left as it was" in job["error_message"]
    assert local_count(engine, schema) == TEST_DATA_ROWS
    again = subprocess.run([sys.executable, "-m", "sfduck_core", "cancel", cancelled[0]], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "is not running (it is cancelled)" in again.stderr


def test_a_cancel_interrupts_a_long_duckdb_load(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    schema = emulator.schema
    synced_once(engine, schema)
    asked: list[str] = []

    def cancel_when_loading(p: SyncProgress) -> None:
        if p.phase == "loading" and not asked:
            asked.append(engine.cancel(p.sync_id)["sync_id"])

    with pytest.raises(SyncCancelledError):
        engine.sync(SyncRequest(schema, "data", transport="stage", force=True), cancel_when_loading)
    assert engine.store.get_job(asked[0])["status"] == "cancelled"
    assert local_count(engine, schema) == TEST_DATA_ROWS


def test_a_sync_past_its_time_limit_is_stopped(settings: Settings, emulator: EmulatorSettings) -> None:
    engine = SyncEngine(dataclasses.replace(settings, sync_timeout_s=0.5))
    schema = emulator.schema
    engine.register(schema, "ORDERS")

    def slow(p: SyncProgress) -> None:
        if p.phase == "unloading":
            time.sleep(0.6)

    with pytest.raises(SyncCancelledError, match=r"Stopped after 0.5 s \(SFDUCK_SYNC_TIMEOUT\)"):
        engine.sync(SyncRequest(schema, "ORDERS"), slow)
    assert engine.store.history(schema, "ORDERS")[0]["status"] == "cancelled"


def test_a_failing_snowflake_ends_the_sync_in_bounded_time_without_switching_transport(
        settings: Settings, emulator: EmulatorSettings, sf) -> None:
    """HTTP 503 on every unload: an outage, not a refusal, so no silent switch to arrow."""
    sf_settings = dataclasses.replace(settings.snowflake, network_timeout=5)
    engine = SyncEngine(dataclasses.replace(settings, snowflake=sf_settings))
    schema = emulator.schema
    synced_once(engine, schema)
    sf.cursor().execute("ALTER ACCOUNT SET SFDUCK_UNLOAD_HTTP_STATUS = 503")
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as failure:
            engine.sync(SyncRequest(schema, "data", transport="auto", force=True))
        elapsed = time.monotonic() - started
    finally:
        sf.cursor().execute("ALTER ACCOUNT UNSET SFDUCK_UNLOAD_HTTP_STATUS")
    assert elapsed < 60, elapsed  # the connector would otherwise retry for many minutes
    assert "\n" not in str(failure.value)
    job = engine.store.history(schema, "data")[0]
    assert job["status"] == "failed" and "fallback_reason" not in job["stats"]
    assert local_count(engine, schema) == TEST_DATA_ROWS
