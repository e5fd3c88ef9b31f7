"""Demo mode, Sync page, admin: make the demo's ORDERS change now or on a timer (AppTest, the real
embedded emulator), and see an incremental sync move the change."""

from __future__ import annotations

import time
from pathlib import Path

from sfduck_core.demo_changes import DemoChange, demo_timer
from sfduck_core.engine import SyncRequest
from sfduck_core.service import shared_service
from sfduck_emulator.settings import DEMO_SCHEMA
from tests.ui.conftest import ui_env
from tests.ui.test_app import assert_clean, button, logged_in, open_page, texts

__all__ = ["ui_env"]  # the fixture, re-exported for pytest


def test_an_admin_changes_orders_now_and_on_a_timer(ui_env: Path) -> None:
    at = logged_in("admin")
    service = shared_service(None)
    engine = service.engine
    engine.register(DEMO_SCHEMA, "ORDERS", incremental_key="UPDATED_AT", primary_key=["ORDER_ID"],
                    detect_deletes=True)
    engine.sync(SyncRequest(DEMO_SCHEMA, "ORDERS", strategy="incremental"))

    open_page(at, "pages/sync.py")
    [inserts, updates, deletes] = [n for n in at.number_input if n.label in ("Insert", "Update", "Delete")]
    inserts.set_value(3)
    updates.set_value(4)
    deletes.set_value(2)
    button(at, "Change ORDERS now").click()
    at.run()
    assert_clean(at)
    assert "ORDERS changed: 3 inserted, 4 updated, 2 deleted." in texts(at)
    job = engine.sync(SyncRequest(DEMO_SCHEMA, "ORDERS", strategy="incremental"))
    stats = job["stats"]
    assert (stats["rows_inserted"], stats["rows_updated"], stats["rows_deleted"]) == (3, 4, 2), stats

    timer = demo_timer(service.settings)
    try:
        button(at, "Start the timer").click()
        at.run()
        assert_clean(at)
        assert timer.running and any("Timer on: every 60 s" in i.value for i in at.info), texts(at)
    finally:
        timer.stop()
    at.run()
    assert not timer.running and not any("Timer on" in i.value for i in at.info)


def test_the_timer_changes_orders_until_stopped(ui_env: Path) -> None:
    logged_in("admin")  # starts the service (and with it the embedded emulator) in this process
    service = shared_service(None)
    timer = demo_timer(service.settings)
    timer.start(10, DemoChange(1, 1, 1))
    try:
        deadline = time.monotonic() + 120  # a bound for a loaded machine, not a speed assertion
        while timer.last is None:
            assert time.monotonic() < deadline, "the timer never changed ORDERS"
            time.sleep(0.2)
        assert {k: timer.last[k] for k in ("inserted", "updated", "deleted")} == {
            "inserted": 1, "updated": 1, "deleted": 1}, timer.last
    finally:
        timer.stop()
    assert not timer.running

