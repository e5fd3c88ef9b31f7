"""Tables in every board state, seeded through the core's own functions (no sync needs to run):
completed, failed, skipped, paused, running and never synced."""

from __future__ import annotations

from pathlib import Path

from sfduck_core.schedules import ScheduleStore
from sfduck_core.store import Registration, Store
from sfduck_emulator.settings import DEMO_SCHEMA

STATES = ("completed", "failed", "skipped", "paused", "running", "never")
ERROR = "Snowflake said: Object 'T_FAILED' does not exist or not authorized.\nSecond line of the error."


def _register(store: Store, table: str) -> Registration:
    return store.upsert_registration(DEMO_SCHEMA, table, incremental_key=None, primary_key=(), detect_deletes=False,
                                     include_columns=(), exclude_columns=())


def _complete(store: Store, reg: Registration, stats: dict, status: str = "completed") -> str:
    sync_id = store.start_job(reg, "full", "arrow", None, trigger="api", started_by="admin")
    store.complete_job(reg, sync_id, {"duration_s": 2.5, "unload_s": 1.0, "download_s": 0.5,
                                      "load_s": 0.5, **stats}, "arrow", status=status,
                       row_count=stats["rows_processed"])
    store.finish(sync_id)
    return sync_id


def seed_states(db: Path) -> dict[str, str]:
    """One table per state, named T_<STATE>; returns state -> the sync id that made it (if any).
    The running job stays running: end it with `end_running`."""
    store = Store(db)
    regs = {state: _register(store, f"T_{state.upper()}") for state in STATES}
    ids = {"completed": _complete(store, regs["completed"], {"rows_processed": 1234567}),
           "skipped": _complete(store, regs["skipped"], {"rows_processed": 0, "skipped": True}, "skipped")}
    ids["failed"] = store.start_job(regs["failed"], "full", "arrow", None, trigger="schedule")
    store.fail_job(regs["failed"], ids["failed"], ERROR, {"duration_s": 0.4})
    store.finish(ids["failed"])
    ids["paused"] = _complete(store, regs["paused"], {"rows_processed": 10})
    schedules = ScheduleStore(store)
    schedules.save(regs["paused"], cron=None, timezone="UTC", interval_s=900, strategy="full", enabled=False,
                   actor="admin")
    schedules.save(regs["completed"], cron=None, timezone="UTC", interval_s=900, strategy="full", enabled=True,
                   actor="admin")
    ids["running"] = store.start_job(regs["running"], "full", "arrow", None)
    return ids


def end_running(db: Path, sync_id: str) -> None:
    store = Store(db)
    store.fail_job(store.require_active(DEMO_SCHEMA, "T_RUNNING"), sync_id, "test cleanup", {})
    store.finish(sync_id)
