"""A sync that found nothing changed says so on the Sync page and is counted apart on History
(AppTest, demo mode): never shown as `completed, 0 rows`."""

from __future__ import annotations

from pathlib import Path

from sfduck_emulator.settings import DEMO_SCHEMA
from tests.ui.conftest import ui_env
from tests.ui.test_app import assert_clean, button, logged_in, open_page, register, start_sync, wait_for_jobs

__all__ = ["ui_env"]  # the fixture, re-exported for pytest


def test_a_skipped_sync_is_shown_as_skipped_on_sync_and_history(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "EMPTY_TABLE")
    start_sync(at, "EMPTY_TABLE")
    assert wait_for_jobs(ui_env / "sfduck.duckdb")[0]["status"] == "completed"
    button(at, "Start sync").click()  # unchanged since: skipped
    at.run()
    jobs = wait_for_jobs(ui_env / "sfduck.duckdb")
    assert [j["status"] for j in jobs] == ["skipped", "completed"]
    at.run()
    assert_clean(at)
    # the session's two syncs, newest first: the skipped one says so, only the first one says "Synced"
    assert [s.label for s in at.status] == [f"Skipped {DEMO_SCHEMA}.EMPTY_TABLE: nothing changed since the last sync",
                                            f"Synced {DEMO_SCHEMA}.EMPTY_TABLE"]

    open_page(at, "pages/history.py")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Completed"], metrics["Skipped"]) == ("1", "1")
    assert list(at.dataframe[0].value["status"]) == ["skipped", "completed"]
