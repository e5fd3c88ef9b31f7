"""The status board (the home page) in each state a table can be in, through AppTest."""

from __future__ import annotations

from pathlib import Path

from sfduck_core.store import Store
from sfduck_emulator.settings import DEMO_SCHEMA
from tests.ui.board_states import ERROR, end_running, seed_states
from tests.ui.conftest import button, texts, ui_env
from tests.ui.test_app import assert_clean, logged_in, open_page, register, wait_for_jobs

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
