"""Syncs in background threads, as the dashboard runs them: several tables at once, progress
visible while they run, a second sync of one table refused."""

from __future__ import annotations

import pytest

from sfduck_core.background import BackgroundSyncs
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SyncAlreadyRunningError
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import TEST_DATA_ROWS


def test_several_tables_sync_at_once_with_progress(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    schema = emulator.schema
    tables = ["data", "ORDERS", "ALL_TYPES", "Mixed Case"]
    for table in tables:
        engine.register(schema, table)
    syncs = BackgroundSyncs(engine)
    seen_phases: dict[str, set[str]] = {}
    started = [syncs.start(SyncRequest(schema, t, transport="stage" if i % 2 else "arrow"))
               for i, t in enumerate(tables)]
    for bg in started:
        while not bg.finished.wait(0.01):
            seen_phases.setdefault(bg.sync_id, set()).add(bg.progress.phase)
        seen_phases.setdefault(bg.sync_id, set()).add(bg.progress.phase)
    assert [bg.error for bg in started] == [None] * len(tables)
    assert all(bg.result["status"] == "completed" for bg in started)
    assert all("done" in phases for phases in seen_phases.values())
    assert started[0].result["stats"]["rows_processed"] == TEST_DATA_ROWS
    assert started[0].progress.fraction == 1.0
    assert not syncs.running()
    assert {j["table_name"] for j in engine.store.history()} == set(tables)


def test_a_second_background_sync_of_a_table_is_refused(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    engine.register(emulator.schema, "ORDERS")
    held = engine.prepare(SyncRequest(emulator.schema, "ORDERS"))  # created, not yet finished
    syncs = BackgroundSyncs(engine)
    with pytest.raises(SyncAlreadyRunningError, match="already running"):
        syncs.start(SyncRequest(emulator.schema, "ORDERS"))
    assert syncs.all() == []
    assert held.run()["status"] == "completed"


def test_a_failed_background_sync_reports_its_message(engine: SyncEngine, emulator: EmulatorSettings, sf,
                                                      source_table) -> None:
    schema = emulator.schema
    table = source_table("ID NUMBER(38,0)", "GONE")
    engine.register(schema, table)
    sf.cursor().execute(f'DROP TABLE "{schema}"."{table}"')
    bg = BackgroundSyncs(engine).start(SyncRequest(schema, table))
    bg.finished.wait(60)
    assert bg.error and "does not exist" in bg.error
    assert bg.progress.phase == "failed"
    job = engine.store.get_job(bg.sync_id)
    assert job["status"] == "failed" and "does not exist" in job["error_message"]


def test_finished_syncs_are_forgotten_beyond_the_limit(engine: SyncEngine, emulator: EmulatorSettings) -> None:
    engine.register(emulator.schema, "EMPTY_TABLE")
    syncs = BackgroundSyncs(engine, keep_finished=2)
    ids = []
    for _ in range(4):
        bg = syncs.start(SyncRequest(emulator.schema, "EMPTY_TABLE"))
        bg.finished.wait(60)
        ids.append(bg.sync_id)
    kept = [bg.sync_id for bg in syncs.all()]
    assert kept == ids[-3:]  # two finished ones plus the newest
    assert len(engine.store.history(emulator.schema, "EMPTY_TABLE")) == 4


def test_a_wall_clock_step_does_not_make_a_live_sync_look_dead(engine: SyncEngine, emulator: EmulatorSettings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9 item 9: stepping the clock moves the wall-clock boot time (/proc/stat btime) and with
    it every process's wall-clock start time; liveness must not depend on it."""
    import psutil

    engine.register(emulator.schema, "ORDERS")
    held = engine.prepare(SyncRequest(emulator.schema, "ORDERS"))
    real_boot = psutil.boot_time()
    for module in (psutil, getattr(psutil, "_pslinux", psutil)):
        monkeypatch.setattr(module, "boot_time", lambda: real_boot + 3600.0, raising=False)
    engine.store.reap_dead_jobs()
    assert engine.store.get_job(held.sync_id)["status"] == "running"
    with pytest.raises(SyncAlreadyRunningError):
        engine.prepare(SyncRequest(emulator.schema, "ORDERS"))
    assert held.run()["status"] == "completed"
