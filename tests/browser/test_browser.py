"""End to end in a real browser: the server (`streamlit run sfduck_server/app.py`, the dashboard and
the API in one process) + headless Debian chromium driven by Playwright.

Log in as admin on the demo data (the board, empty), register "data" on Discover, start its sync
from the board and watch it live there, sync again from the Sync page, watch a sync started through
the API appear on the Sync page, give the table a schedule, read History's one-day charts, preview
the table, log out; prove that a deep link on a freshly started server shows nothing but the login
form; then, on ninety days of seeded history, read the board and History's charts. Screenshots at
1280x800 go to test-output/browser/ (gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from sfduck_emulator.settings import DEMO_SCHEMA
from tests.history_seed import seed_history
from tests.serving import free_port, wait_until_healthy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCHEMA = DEMO_SCHEMA
START_TIMEOUT_S = 60
SYNC_TIMEOUT_MS = 180_000
VIEWPORT = {"width": 1280, "height": 800}
DAY_TICK = re.compile(r"^[A-Z][a-z]{2} \d{2}$")  # "Dec 07": a calendar day, never a time of day


def app_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "SFDUCK_"))}
    env.update(
        SFDUCK_DUCKDB_PATH=str(tmp_path / "sfduck.duckdb"),
        SFDUCK_DATA_DIR=str(tmp_path / "data"),
        SFDUCK_USERS_FILE=str(tmp_path / "users.yaml"),  # absent: demo users only
        SFDUCK_DEMO_ROWS="1000000",  # big enough for the progress to be seen
        PYTHONPATH=str(ROOT),
    )
    return env


@contextmanager
def streamlit_server(tmp_path: Path, name: str) -> Iterator[str]:
    """A fresh server process on a free loopback port, as ./scripts/dashboard.sh starts it; yields its
    base URL."""
    port = free_port()
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "sfduck_server/app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=app_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/_stcore/health", proc, tmp_path / f"{name}.log", START_TIMEOUT_S)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def shot(page: Page, name: str, full_page: bool = False) -> None:
    """What a 1280x800 window shows (or the whole page, scrolled)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(1, 1)  # no tooltip of whatever the last click left the pointer on
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)


def settled(page: Page, timeout_ms: float = 60_000) -> None:
    """Wait until the app's script run has finished (Streamlit marks its root with the run state).

    Call it after the element a step waits for is visible: right after a click the state may still
    say "notRunning" from before the click.
    """
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_ms)


def log_in(page: Page, username: str, password: str) -> None:
    """Type into the form the moment it shows: it must be the only one and must stay (no second paint)."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    settled(page)
    expect(page.get_by_role("button", name="Log in")).to_have_count(1)
    expect(page.get_by_label("Username")).to_have_value(username)  # nothing typed was lost
    page.get_by_role("button", name="Log in").click()


def go(page: Page, title: str) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    settled(page)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()  # not undone by a rerun


def board_row(page: Page, table: str) -> Locator:
    """The board's row of `table` (each row is a bordered container keyed by the table)."""
    return page.locator('[class*="st-key-board_row_"]').filter(has=page.get_by_text(table, exact=True))


def chart_titled(page: Page, title: str) -> Locator:
    return page.locator(".js-plotly-plot").filter(has=page.locator(".gtitle", has_text=title))


def x_ticks(chart: Locator) -> list[str]:
    return [t for t in chart.locator(".xtick text").all_text_contents() if t]


def api_start_sync(url: str, table: str) -> tuple[str, str]:
    """Start a sync the way automation does: a token, then POST /sync/start; (token, sync_id)."""
    form = b"username=admin&password=admin"
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/auth/token", data=form), timeout=30) as r:
        token = json.load(r)["access_token"]
    body = json.dumps({"table_name": table, "schema_name": SCHEMA, "strategy": "full", "force": True,
                       "transport": "arrow"}).encode()
    request = urllib.request.Request(f"{url}/api/v1/sync/start", data=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 202
        return token, json.load(r)["sync_id"]


def api_wait_for_end(url: str, token: str, sync_id: str) -> dict:
    deadline = time.monotonic() + SYNC_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"{url}/api/v1/sync/status/{sync_id}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            job = json.load(r)
        if job["status"] not in ("pending", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"sync {sync_id} did not end")


def assert_only_login_form(page: Page) -> None:
    expect(page.get_by_label("Username")).to_be_visible(timeout=30_000)
    settled(page)
    expect(page.get_by_label("Username")).to_have_count(1)
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Log in")).to_have_count(1)
    for forbidden in ("Start sync", "Register", "Run query"):
        expect(page.get_by_role("button", name=forbidden)).to_have_count(0)
    expect(page.locator('[data-testid="stSidebarNav"]')).to_have_count(0)
    expect(page.locator('[data-testid="stSidebar"] a')).to_have_count(0)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(0)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    assert page.get_by_role("heading").all_inner_texts() == ["sfduck", "Log in"]


def session_cookie(context: BrowserContext) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == "sfduck_session"), None)


def wait_for_session_cookie(page: Page, context: BrowserContext) -> dict:
    """Until the server's Set-Cookie (answering the login page's request) has reached the browser."""
    deadline = time.monotonic() + 30
    while (cookie := session_cookie(context)) is None:
        assert time.monotonic() < deadline, "the server never set the session cookie"
        page.wait_for_timeout(100)
    return cookie


def test_login_sync_history_preview_logout_and_fresh_deep_link(browser: Browser, tmp_path: Path) -> None:
    with streamlit_server(tmp_path, "first") as url:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        expect(page.get_by_text("Demo mode")).to_be_visible(timeout=30_000)
        shot(page, "01_login")
        log_in(page, "admin", "admin")
        page.get_by_role("heading", name="Board", exact=True).wait_for()
        settled(page)
        expect(page.get_by_text("No table is registered yet")).to_be_visible()
        expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("demo")
        shot(page, "02_board_empty")
        # The server set the re-login cookie HttpOnly: the browser holds it, page scripts cannot read it.
        cookie = wait_for_session_cookie(page, context)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "sfduck_session" not in page.evaluate("document.cookie")
        page.reload()  # the signed cookie logs the browser back in, in the first run of the page
        page.get_by_role("heading", name="Board", exact=True).wait_for(timeout=30_000)
        settled(page)
        expect(page.get_by_label("Password", exact=True)).to_have_count(0)

        go(page, "Discover")
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        choose(page, "Table", "data")
        page.get_by_role("tab", name="Register for syncing").click()
        page.get_by_role("button", name="Register", exact=True).click()
        expect(page.get_by_text(f"Registered {SCHEMA}.data")).to_be_visible()
        shot(page, "03_registered")

        # The board: start the sync from its row and watch it live there, without a click.
        go(page, "Board")
        row = board_row(page, "data")
        expect(row.get_by_text("never synced")).to_be_visible()
        row.get_by_role("button", name="Sync", exact=True).click()
        progress = page.locator('[data-testid="stProgress"]')
        expect(progress.first).to_be_visible(timeout=30_000)
        with contextlib.suppress(PlaywrightTimeoutError):  # for a telling screenshot; may be too quick
            page.get_by_text(re.compile(r"(downloading|loading) · [\d,]+ of 1,000,000 rows")).wait_for(timeout=10_000)
        shot(page, "04_board_live_sync")
        # the sync's end reruns the page once (new counts): while it runs, the old row may still show
        expect(row.get_by_text("completed").first).to_be_visible(timeout=SYNC_TIMEOUT_MS)
        expect(progress).to_have_count(0)
        settled(page)
        expect(row).to_have_count(1)
        expect(row.first.get_by_text("completed")).to_be_visible()
        expect(row.first.get_by_text("1,000,000")).to_be_visible()
        expect(row.first.get_by_text("just now")).to_be_visible()
        shot(page, "04b_board_after_sync")

        go(page, "Sync")
        choose(page, "Registered table", f"{SCHEMA}.data")
        page.get_by_text("Sync even if unchanged").click()  # else it ends at once, skipped
        page.get_by_role("button", name="Start sync").click()
        expect(progress.first).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(rf"{SCHEMA}\.data: "))).to_be_visible()
        with contextlib.suppress(PlaywrightTimeoutError):  # for a telling screenshot; may be too quick
            page.get_by_text(re.compile(rf"{SCHEMA}\.data: (downloading|loading)")).wait_for(timeout=5_000)
        shot(page, "05a_sync_progress_next_to_its_button")
        expect(page.get_by_text(f"Synced {SCHEMA}.data")).to_be_visible(timeout=SYNC_TIMEOUT_MS)
        expect(page.get_by_text("All statistics")).to_be_visible()
        expect(progress).to_have_count(0)
        expect(page.get_by_text("1,000,000").first).to_be_visible()
        shot(page, "05_sync_done")

        # A sync started through the API shows up on the open Sync page without a click.
        token, api_sync = api_start_sync(url, "data")
        with contextlib.suppress(PlaywrightTimeoutError):  # its live progress, if it runs long enough
            expect(progress.first).to_be_visible(timeout=10_000)
            shot(page, "05b_api_sync_progress")
        recent = page.locator('[data-testid="stDataFrame"]').last
        # the job list names who started each sync: only the API's sync says "api" (the others "dashboard")
        expect(recent).to_contain_text("api", timeout=60_000)
        assert api_wait_for_end(url, token, api_sync)["status"] == "completed"
        expect(progress).to_have_count(0, timeout=30_000)  # the page saw it end, without a click
        shot(page, "05c_api_sync_on_the_sync_page")

        go(page, "Schedules")
        page.get_by_role("textbox", name="Cron expression", exact=True).fill("*/30 * * * *")
        page.get_by_role("button", name="Save schedule").click()
        expect(page.get_by_text(re.compile(rf"Saved: {SCHEMA}\.data cron \*/30"))).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        shot(page, "06a_schedules")

        go(page, "History")
        rows_chart = chart_titled(page, "Rows synced per day")
        expect(rows_chart).to_be_visible()
        # Plotly ships the numbers binary-encoded; _fullData holds them decoded, as drawn.
        drawn = rows_chart.evaluate("el => el._fullData.map(trace => Array.from(trace.y))")
        assert drawn == [[3_000_000]], drawn  # the three syncs of today, summed per day
        status_chart = chart_titled(page, "Syncs per day, by status")
        names = status_chart.evaluate("el => el._fullData.map(trace => [trace.name, Array.from(trace.y)])")
        assert names == [["completed", [3]]], names
        for chart in (status_chart, rows_chart, chart_titled(page, "Sync duration per day")):
            ticks = x_ticks(chart)
            assert len(ticks) == 1 and DAY_TICK.match(ticks[0]), ticks  # one day: one tick, its date
        shot(page, "06_history_one_day")
        page.get_by_role("heading", name="Job detail").scroll_into_view_if_needed()
        expect(chart_titled(page, "Phases")).to_be_visible()
        shot(page, "06b_history_job_detail")

        go(page, "Preview")
        expect(page.get_by_text("Rows in DuckDB")).to_be_visible()
        expect(page.locator('[data-testid="stMetricValue"]').first).to_have_text("1,000,000")
        page.get_by_role("tab", name="SQL").click()
        page.get_by_role("button", name="Run query").click()
        expect(page.get_by_role("button", name="Download Parquet")).to_be_visible(timeout=30_000)
        shot(page, "07_preview_sql")

        page.get_by_role("button", name="Log out").click()
        assert_only_login_form(page)
        shot(page, "08_logged_out")
        page.reload()  # the re-login cookie is gone too
        assert_only_login_form(page)
        assert session_cookie(context) is None
        context.close()

    with streamlit_server(tmp_path, "fresh") as url:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(f"{url}/sync")
        assert_only_login_form(page)
        shot(page, "09_fresh_deep_link")
        # Logging in from the deep link opens the page that was asked for.
        log_in(page, "admin", "admin")
        page.get_by_role("heading", name="Sync", exact=True).wait_for(timeout=30_000)
        shot(page, "10_deep_link_after_login")
        context.close()


def test_board_and_history_over_ninety_days_of_jobs(browser: Browser, tmp_path: Path) -> None:
    """Ninety days of schedules on 30 tables: the board's counts and rows, and History's day axis."""
    seed_history(tmp_path / "sfduck.duckdb", count=20_000, days=90)
    with streamlit_server(tmp_path, "ninety") as url:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        log_in(page, "analyst", "analyst")
        page.get_by_role("heading", name="Board", exact=True).wait_for(timeout=30_000)
        settled(page)
        expect(page.get_by_text(re.compile(r"completed · \d+"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"skipped · \d+"))).to_be_visible()
        expect(page.get_by_role("button", name="Sync", exact=True)).to_have_count(0)  # analysts watch
        shot(page, "11_board_ninety_days")
        page.get_by_role("button", name=re.compile(r"failed · \d+")).click()
        expect(board_row(page, "SEEDED_0")).to_have_count(0)  # SEEDED_0's last sync completed
        settled(page)
        failed_rows = page.locator('[class*="st-key-board_row_"]')
        expect(failed_rows).to_have_count(1)
        expect(failed_rows.get_by_text("warehouse SEED_WH is suspended")).to_be_visible()
        shot(page, "12_board_failed_filter")

        # An analyst opening an admin page's address is told why, not "Page not found".
        page.goto(f"{url}/sync")
        expect(page.get_by_text("The Sync page needs the admin role")).to_be_visible(timeout=30_000)
        # and an old bookmark lands on the page that took its job over
        page.goto(f"{url}/tables")
        page.get_by_role("heading", name="Discover", exact=True).wait_for(timeout=30_000)
        expect(page.get_by_text("This address moved")).to_be_visible()

        go(page, "History")
        status_chart = chart_titled(page, "Syncs per day, by status")
        expect(status_chart).to_be_visible()
        ticks = x_ticks(status_chart)
        assert 4 <= len(ticks) <= 12 and all(DAY_TICK.match(t) for t in ticks), ticks
        traces = status_chart.evaluate("el => el._fullData.map(t => [t.name, t.marker.color])")
        assert [name for name, _ in traces] == ["failed", "cancelled", "skipped", "completed"], traces
        assert dict(traces)["failed"] == "#D64545"
        for title in ("Rows synced per day", "Sync duration per day (s)"):
            chart_ticks = x_ticks(chart_titled(page, title))
            assert chart_ticks and all(DAY_TICK.match(t) for t in chart_ticks), (title, chart_ticks)
        shot(page, "13_history_ninety_days")
        chart_titled(page, "Rows synced per day").scroll_into_view_if_needed()
        shot(page, "13b_history_ninety_days_rows_and_durations")
        page.get_by_role("heading", name="Job detail").scroll_into_view_if_needed()
        shot(page, "13c_history_ninety_days_job_detail")
        context.close()
