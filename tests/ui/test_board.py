"""The status board (the home page) in each state a table can be in, through AppTest."""

from __future__ import annotations

import json
from pathlib import Path

from sfduck_core.store import Store
from sfduck_emulator.settings import DEMO_SCHEMA
from sfduck_ui.status import COLORS
from tests.ui.board_states import ERROR, end_running, seed_states
from tests.ui.conftest import button, texts, ui_env
from tests.ui.test_app import assert_clean, logged_in, open_page, register, start_sync, wait_for_jobs

__all__ = ["ui_env"]


def markdowns(at) -> list[str]:
    return [m.value for m in at.markdown]




def test_empty_board_names_the_next_step(ui_env: Path) -> None:
    at = logged_in("admin")
    assert at.title[0].value == "Board"
    assert "No table is registered yet" in at.info[0].value and "Discover" in at.info[0].value
    assert [link.proto.label for link in at.main.get("page_link")] == ["Discover Snowflake tables"]


def test_board_shows_every_state_with_counts_badges_and_errors(ui_env: Path) -> None:
    ids = seed_states(ui_env / "sfduck.duckdb")
    try:
        at = logged_in("analyst")
        assert_clean(at)
        [counts] = at.get("button_group")
        options = [o.content for o in counts.proto.options]
        for label, n in (("completed", 1), ("failed", 1), ("skipped", 1), ("paused", 1), ("running", 1),
                         ("never synced", 1)):
            assert any(o.endswith(f"{label} · {n}") for o in options), options
        shown = "\n".join(markdowns(at))
        for badge in (":green-badge[:material/check_circle: completed]", ":red-badge[:material/error: failed]",
                      ":gray-badge[:material/skip_next: skipped]", ":yellow-badge[:material/pause_circle: paused]",
                      ":blue-badge[:material/sync: running]",
                      ":primary-badge[:material/radio_button_unchecked: never synced]"):
            assert badge in shown, shown
        assert "1,234,567" in shown  # rows with separators
        assert "every 15 min" in shown  # the schedule as it was entered
        assert ERROR.splitlines()[0] in shown and ERROR.splitlines()[1] not in shown  # one line
        assert 'title="20' in shown and " UTC" in shown  # the exact time on hover
        assert "Running in another process" in texts(at)
        links = [(link.proto.label, link.proto.query_string) for link in at.main.get("page_link")]
        assert ("Open this job in History", f"job={ids['failed']}") in links
        assert not [b for b in at.button if b.label == "Sync"]  # analysts watch, admins start
    finally:
        end_running(ui_env / "sfduck.duckdb", ids["running"])


def test_board_shows_a_sync_waiting_for_the_file_with_whose_process_holds_it(ui_env: Path) -> None:
    """Issue 21 item 5: a `waiting` job (another process holds the DuckDB file) has its own badge,
    says whom it waits for, counts as active (no second Sync) and is counted in the filters."""
    store = Store(ui_env / "sfduck.duckdb")
    reg = store.upsert_registration(DEMO_SCHEMA, "T_WAITING", incremental_key=None, primary_key=(),
                                    detect_deletes=False, include_columns=(), exclude_columns=())
    sync_id = store.start_job(reg, "full", "arrow", None)
    message = "Waiting: the DuckDB file is open in python3 (pid 4321); the sync starts by itself when it lets go"
    store.mark_waiting(sync_id, message)
    try:
        at = logged_in("admin")
        assert_clean(at)
        shown = "\n".join(markdowns(at))
        assert ":violet-badge[:material/lock_clock: waiting]" in shown, shown
        assert message in texts(at)
        [counts] = at.get("button_group")
        assert any(o.content.endswith("waiting · 1") for o in counts.proto.options)
        [sync] = [b for b in at.button if b.label == "Sync"]
        assert sync.disabled
    finally:
        store.fail_job(reg, sync_id, "test cleanup", {})
        store.finish(sync_id)


def test_board_filters_by_status_and_schema(ui_env: Path) -> None:
    ids = seed_states(ui_env / "sfduck.duckdb")
    end_running(ui_env / "sfduck.duckdb", ids["running"])
    at = logged_in("analyst")
    at.session_state["board_status"] = ["failed"]
    at.run()
    assert_clean(at)
    shown = "\n".join(markdowns(at))
    assert "**T_FAILED**" in shown and "T_COMPLETED" not in shown
    at.session_state["board_status"] = ["failed", "skipped"]
    at.session_state["board_schema"] = [DEMO_SCHEMA]
    at.run()
    shown = "\n".join(markdowns(at))
    assert "T_FAILED" in shown and "T_SKIPPED" in shown and "T_PAUSED" not in shown


def test_admin_starts_a_sync_from_the_board(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    open_page(at, "pages/board.py")
    assert ":primary-badge[:material/radio_button_unchecked: never synced]" in "\n".join(markdowns(at))
    button(at, "Sync").click()
    at.run()
    assert_clean(at)
    jobs = wait_for_jobs(ui_env / "sfduck.duckdb")
    assert [(j["table_name"], j["status"], j["trigger"], j["started_by"]) for j in jobs] == [
        ("ORDERS", "completed", "dashboard", "admin")]
    at.run()
    shown = "\n".join(markdowns(at))
    assert ":green-badge[:material/check_circle: completed]" in shown
    assert f"{Store(ui_env / 'sfduck.duckdb').sync_status(DEMO_SCHEMA, 'ORDERS')['row_count']:,}" in shown


def test_history_charts_each_status_in_its_colour_and_opens_a_linked_job(ui_env: Path) -> None:
    ids = seed_states(ui_env / "sfduck.duckdb")
    end_running(ui_env / "sfduck.duckdb", ids["running"])  # a running job ends failed ("test cleanup")
    at = logged_in("analyst")
    at.query_params["job"] = ids["failed"]  # the board's "Open this job in History"
    open_page(at, "pages/history.py")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Syncs"], metrics["Completed"], metrics["Failed"], metrics["Skipped"]) == ("5", "2", "2", "1")
    assert metrics["Rows synced"] == "1,234,577"
    [status_chart] = [c for c in at.get("plotly_chart") if "Syncs per day, by status" in c.proto.spec]
    traces = {t["name"]: t["marker"]["color"] for t in json.loads(status_chart.proto.spec)["data"]}
    assert traces == {"failed": COLORS["red"], "skipped": COLORS["gray"], "completed": COLORS["green"]}
    [job_box] = [s for s in at.selectbox if s.label == "Job"]
    assert job_box.value == ids["failed"]
    fields = at.table[0].value
    assert fields.loc["Status", "value"] == "failed" and fields.loc["Error", "value"] == ERROR
    assert fields.loc["Started from", "value"] == "schedule"
    assert any(ERROR.splitlines()[0] in e.value for e in at.error)
    job_box.select(ids["completed"]).run()
    assert_clean(at)
    fields = at.table[0].value
    assert fields.loc["Rows processed", "value"] == "1,234,567" and fields.loc["Duration", "value"] == "2.5 s"
    [phases] = [c for c in at.get("plotly_chart") if "Phases" in c.proto.spec]
    assert [t["name"] for t in json.loads(phases.proto.spec)["data"]] == ["unload", "download", "load", "swap"]


def test_sync_page_says_a_sync_that_found_nothing_changed_was_skipped(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    for _ in range(2):
        start_sync(at, "ORDERS")
        wait_for_jobs(ui_env / "sfduck.duckdb")
    at.run()
    assert_clean(at)
    labels = [s.label for s in at.status]
    assert f"Skipped {DEMO_SCHEMA}.ORDERS: nothing changed since the last sync" in labels, labels
    assert f"Synced {DEMO_SCHEMA}.ORDERS" in labels
    open_page(at, "pages/board.py")
    assert ":gray-badge[:material/skip_next: skipped]" in "\n".join(markdowns(at))
