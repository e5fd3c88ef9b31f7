"""The dashboard through Streamlit's AppTest: login, logout, role gating and every page.

Runs in demo mode (the embedded emulator) on a temp DuckDB file; see tests/conftest_ui.py.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import jwt
import pytest
import snowflake.connector
import yaml
from streamlit.testing.v1 import AppTest

from sfduck_core import preview as preview_core
from sfduck_core.authdb import AUTH_DB_FILE, AuthDatabase
from sfduck_core.sessions import Session, SessionTokens, resolve_session_key
from sfduck_core.store import Store
from sfduck_core.users import hash_password, load_users
from sfduck_emulator.server import embedded_emulator
from sfduck_emulator.settings import DEMO_SCHEMA
from sfduck_ui.auth import SESSION_COOKIE_ROUTE, SESSION_STATE_KEY
from sfduck_ui.status import COLORS
from tests.ui.conftest import ROOT, RUN_TIMEOUT_S, button, log_in, new_app, texts, ui_env

__all__ = ["ui_env"]  # the fixture, re-exported for pytest

PAGE_FILES = ["pages/board.py", "pages/discover.py", "pages/sync.py", "pages/schedules.py", "pages/history.py",
              "pages/preview.py", "pages/tables.py", "pages/register.py"]


def assert_clean(at: AppTest) -> None:
    """No uncaught exception reached the screen."""
    assert not at.exception, [e.message for e in at.exception]


def assert_login_form_only(at: AppTest) -> None:
    assert_clean(at)
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.sidebar.markdown and not at.sidebar.get("page_link")
    assert not at.dataframe and not at.get("plotly_chart")


def tokens_for(ui_env: Path) -> SessionTokens:
    """The same tokens the app under test uses (same key file and auth database beside its DuckDB)."""
    return SessionTokens(resolve_session_key(None, ui_env), AuthDatabase(ui_env / AUTH_DB_FILE))


def session_for(ui_env: Path, username: str) -> Session:
    users = load_users(True, ui_env / "users.yaml")
    return tokens_for(ui_env).issue(username, users.password_hash_of(username) or "")[1]


def logged_in(username: str, password: str | None = None) -> AppTest:
    at = new_app().run()
    log_in(at, username, password or username)
    assert_clean(at)
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert_clean(at)
    return at


def select(at: AppTest, label: str, value: object) -> AppTest:
    [box] = [s for s in at.selectbox if s.label == label]
    box.select(value)
    return at.run()


def wait_for_jobs(db: Path, timeout_s: float = 60) -> list[dict]:
    """Wait until no sync in the DuckDB file is running, then return the history (newest first)."""
    deadline = time.monotonic() + timeout_s
    store = Store(db)
    while True:
        jobs = store.history()
        if jobs and all(j["status"] not in ("pending", "running") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"syncs still running: {jobs}"
        time.sleep(0.2)


def register(at: AppTest, table: str) -> AppTest:
    open_page(at, "pages/discover.py")
    select(at, "Table", table)
    button(at, "Register").click()
    at.run()
    assert_clean(at)
    assert any(f"Registered {DEMO_SCHEMA}.{table}" in s.value for s in at.success), texts(at)
    return at


def start_sync(at: AppTest, table: str) -> AppTest:
    open_page(at, "pages/sync.py")
    select(at, "Registered table", f"{DEMO_SCHEMA}.{table}")
    button(at, "Start sync").click()
    return at.run()


# --- login, logout, gating ------------------------------------------------------------------------


def test_logged_out_visitor_sees_only_the_login_form_with_demo_hint(ui_env: Path) -> None:
    at = new_app().run()
    assert_login_form_only(at)
    hint = " ".join(i.value for i in at.info)
    assert "Demo mode" in hint and "admin" in hint and "analyst" in hint


@pytest.mark.parametrize("page", PAGE_FILES)
def test_page_file_run_directly_shows_only_the_login_form(ui_env: Path, page: str) -> None:
    """What a deep link on a fresh server does: Streamlit runs the page file without the entrypoint."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=RUN_TIMEOUT_S).run()
    assert_login_form_only(at)


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(ui_env: Path) -> None:
    at = new_app().run()
    log_in(at, "admin", "wrong")
    assert_clean(at)
    assert "Wrong username or password" in at.error[0].value
    for _ in range(4):
        log_in(at, "admin", "wrong")
    assert "Too many failed logins for 'admin'" in at.error[0].value
    log_in(at, "admin", "admin")  # even the right password waits out the lock
    assert "Too many failed logins" in at.error[0].value
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    # Another user is not affected.
    log_in(at, "analyst", "analyst")
    assert_clean(at)
    assert at.title[0].value == "Board"


def test_admin_login_shows_all_pages_and_the_sidebar(ui_env: Path) -> None:
    at = logged_in("admin")
    links = [link.proto.label for link in at.sidebar.get("page_link")]
    assert links == ["Board", "Discover", "Sync", "Schedules", "History", "Preview", "Connection"]
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "`admin`" in sidebar and "**Role:** admin" in sidebar and "**Snowflake account:** demo" in sidebar
    assert [b.label for b in at.sidebar.button] == ["Log out"]


def test_analyst_opening_an_admin_page_is_told_it_needs_the_admin_role(ui_env: Path) -> None:
    at = logged_in("analyst")
    links = [link.proto.label for link in at.sidebar.get("page_link")]
    assert links == ["Board", "Discover", "Schedules", "History", "Preview"]
    for page in ("pages/sync.py", "pages/connection.py"):
        open_page(at, page)  # its address exists (a bookmark), its content does not
        assert "needs the admin role" in at.error[0].value, texts(at)
        assert not [b for b in at.button if b.label in ("Start sync", "Run checks")]
    for page in ("pages/history.py", "pages/preview.py"):
        open_page(at, page)
        assert not at.error


@pytest.mark.parametrize("old", ["pages/tables.py", "pages/register.py"])
def test_a_bookmark_of_a_moved_page_lands_on_its_new_home(ui_env: Path, old: str) -> None:
    at = open_page(logged_in("admin"), old)
    assert at.title[0].value == "Discover"
    assert any("This address moved" in s.value and "Discover" in s.value for s in at.success)


@pytest.mark.parametrize("page", ["pages/sync.py", "pages/connection.py"])
def test_page_guard_refuses_the_analyst_role_when_run_directly(ui_env: Path, page: str) -> None:
    """The per-page gate itself (legacy direct run, e.g. a URL on a fresh server after a cookie login)."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=RUN_TIMEOUT_S)
    at.session_state[SESSION_STATE_KEY] = session_for(ui_env, "analyst")
    at.run()
    assert_clean(at)
    assert "needs the admin role" in at.error[0].value
    assert not at.get("form") and not [b for b in at.button if b.label in ("Register", "Start sync")]


def test_logout_returns_to_the_login_form(ui_env: Path) -> None:
    at = logged_in("admin")
    at.sidebar.button[0].click()
    at.run()
    assert_login_form_only(at)
    assert SESSION_STATE_KEY not in at.session_state
    with pytest.raises(ValueError):
        at.switch_page("pages/board.py")


def cookie_scripts(at: AppTest) -> list[str]:
    return [e.proto.body for e in at.get("html") if SESSION_COOKIE_ROUTE in e.proto.body]


def token_in(script: str) -> str:
    return re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", script).group(0)


def test_login_sets_a_cookie_that_logout_revokes_server_side(ui_env: Path) -> None:
    """After logout the old cookie is worthless even if a browser (or a thief) kept a copy. The
    page never writes the cookie itself: it hands the token to the server, which sets it HttpOnly."""
    at = logged_in("admin")
    (script,) = cookie_scripts(at)
    assert "document.cookie" not in script and '"POST"' in script
    token = token_in(script)
    tokens = tokens_for(ui_env)
    users = load_users(True, ui_env / "users.yaml")
    session = tokens.verify(token, users.password_hash_of)
    assert session is not None
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(43200, abs=1)  # 12 h by default
    at.run()
    assert not cookie_scripts(at)  # written once, not on every run
    at.sidebar.button[0].click()
    at.run()
    (deletion,) = cookie_scripts(at)
    assert '"DELETE"' in deletion and "document.cookie" not in deletion
    assert tokens.verify(token, users.password_hash_of) is None


def test_session_lifetime_is_a_setting(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFDUCK_SESSION_HOURS", "2")
    at = logged_in("admin")
    (script,) = cookie_scripts(at)
    claims = jwt.decode(token_in(script), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(7200, abs=1)


def test_a_placeholder_cookie_key_stops_the_dashboard(ui_env: Path) -> None:
    at = new_app()
    at.secrets["sfduck"] = {"cookie_key": "replace-me-with-at-least-32-random-characters"}
    at.run()
    assert_clean(at)
    assert "[sfduck] cookie_key looks like a placeholder" in at.error[0].value
    assert not at.text_input  # no login form at all


def test_demo_credentials_refused_outside_demo_mode(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "myorg-myaccount")
    monkeypatch.setenv("SNOWFLAKE_USER", "reader")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "not-used-here")
    (ui_env / "users.yaml").write_text(yaml.safe_dump({"usernames": {
        "admin": {"password": hash_password("admin", rounds=4), "roles": ["admin"]}}}))
    at = new_app().run()
    assert_clean(at)
    assert "cannot start" in at.error[0].value and "demo password for admin" in at.error[0].value
    assert not at.text_input  # no login form at all


def test_real_users_file_outside_demo_mode(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "myorg-myaccount")
    monkeypatch.setenv("SNOWFLAKE_USER", "reader")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "not-used-here")
    (ui_env / "users.yaml").write_text(yaml.safe_dump({"usernames": {
        "jdoe": {"password": hash_password("long-enough-pw", rounds=4), "roles": ["analyst"]}}}))
    at = new_app().run()
    assert_clean(at)
    assert not at.info  # no demo hint
    log_in(at, "admin", "admin")
    assert "Wrong username or password" in at.error[0].value
    log_in(at, "jdoe", "long-enough-pw")
    assert "**Snowflake account:** myorg-myaccount" in " ".join(m.value for m in at.sidebar.markdown)


# --- pages ----------------------------------------------------------------------------------------


def test_discover_page_lists_searches_and_describes(ui_env: Path) -> None:
    at = open_page(logged_in("admin"), "pages/discover.py")
    assert at.title[0].value == "Discover"
    listing = at.dataframe[0].value
    assert {"data", "ORDERS", "ALL_TYPES", "EMPTY_TABLE"} <= set(listing["table"])
    assert listing.set_index("table").loc["data", "rows"] > 0
    assert not listing["registered"].any()

    [search] = [t for t in at.text_input if t.label == "Search tables"]
    search.input("ord").run()
    assert list(at.dataframe[0].value["table"]) == ["ORDERS"]

    columns = at.dataframe[1].value
    assert {"column", "snowflake_type", "duckdb_type", "primary_key"} <= set(columns.columns)
    assert columns["duckdb_type"].notna().all()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows a full sync moves"].replace(",", "").isdigit()
    assert int(metrics["Columns"]) == len(columns)


def test_register_and_unregister(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    registrations = at.dataframe[-1].value
    assert list(registrations["table_name"]) == ["ORDERS"]
    assert list(registrations["status"]) == ["active"]

    button(at, "Unregister").click()
    at.run()
    assert_clean(at)
    assert any("Unregistered" in s.value and "history are kept" in s.value for s in at.success)
    assert list(at.dataframe[-1].value["status"]) == ["inactive"]

    open_page(at, "pages/sync.py")
    assert "No table is registered yet" in at.info[0].value


def test_register_with_unknown_selection_shows_a_plain_error(ui_env: Path) -> None:
    at = logged_in("admin")
    open_page(at, "pages/discover.py")
    select(at, "Table", "ORDERS")
    [mode] = [r for r in at.radio if r.label == "Columns to copy"]
    mode.set_value("Only these columns")
    button(at, "Register").click()
    at.run()
    assert_clean(at)
    assert "needs at least one column" in at.error[0].value


def test_sync_runs_in_background_shows_result_and_refuses_a_second_one(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    db = ui_env / "sfduck.duckdb"
    # A sync of ORDERS already running (started by another session or the CLI): refused on screen.
    store = Store(db)
    running_id = store.start_job(store.require_active(DEMO_SCHEMA, "ORDERS"), "full", "auto", None)
    start_sync(at, "ORDERS")
    assert_clean(at)
    assert "already running" in at.error[0].value and running_id in at.error[0].value
    store.fail_job(store.require_active(DEMO_SCHEMA, "ORDERS"), running_id, "test cleanup", {})
    store.finish(running_id)

    button(at, "Start sync").click()
    at.run()
    assert_clean(at)
    assert not at.error
    jobs = wait_for_jobs(db)
    assert jobs[0]["status"] == "completed", jobs[0]
    at.run()
    assert_clean(at)
    assert any(s.label == f"Synced {DEMO_SCHEMA}.ORDERS" for s in at.status)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == f"{jobs[0]['stats']['rows_processed']:,}"
    assert int(metrics["Rows"].replace(",", "")) > 0


def test_several_tables_sync_at_once(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    register(at, "EMPTY_TABLE")
    start_sync(at, "ORDERS")
    start_sync(at, "EMPTY_TABLE")  # starting the second while the first may still run is fine
    assert_clean(at)
    assert not at.error
    jobs = wait_for_jobs(ui_env / "sfduck.duckdb")
    assert sorted((j["table_name"], j["status"]) for j in jobs) == [("EMPTY_TABLE", "completed"),
                                                                    ("ORDERS", "completed")]


def test_sync_failing_in_the_background_shows_its_message(ui_env: Path) -> None:
    table = f"GONE_{uuid.uuid4().hex[:8].upper()}"
    with snowflake.connector.connect(**embedded_emulator().connect_kwargs()) as sf:
        sf.cursor().execute(f'CREATE TABLE "{DEMO_SCHEMA}"."{table}" (ID NUMBER(38,0))')
        at = logged_in("admin")
        register(at, table)
        sf.cursor().execute(f'DROP TABLE "{DEMO_SCHEMA}"."{table}"')  # dropped after registering
    start_sync(at, table)
    assert_clean(at)
    jobs = wait_for_jobs(ui_env / "sfduck.duckdb")
    assert jobs[0]["status"] == "failed"
    at.run()
    assert_clean(at)
    assert f"Sync of {DEMO_SCHEMA}.{table} failed" in at.error[0].value
    assert jobs[0]["error_message"] in at.error[0].value
    open_page(at, "pages/history.py")
    [status_chart] = [c for c in at.get("plotly_chart") if "Syncs per day, by status" in c.proto.spec]
    spec = json.loads(status_chart.proto.spec)
    [failed] = [trace for trace in spec["data"] if trace["name"] == "failed"]
    assert failed["marker"]["color"] == COLORS["red"]  # failure's colour, on every chart
    assert f"This sync failed: {jobs[0]['error_message']}" in at.error[0].value


def test_invalid_filter_is_refused_before_any_job(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    open_page(at, "pages/sync.py")
    [where] = [t for t in at.text_input if t.label == "Row filter (optional)"]
    where.input("1; DROP TABLE x")
    button(at, "Start sync").click()
    at.run()
    assert_clean(at)
    assert at.error and "filter" in at.error[0].value.lower()
    assert not Store(ui_env / "sfduck.duckdb").history()  # refused before any job was created


def test_history_and_preview_after_a_sync(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    start_sync(at, "ORDERS")
    jobs = wait_for_jobs(ui_env / "sfduck.duckdb")
    sync_id = jobs[0]["sync_id"]

    open_page(at, "pages/history.py")
    assert len(at.get("plotly_chart")) >= 3
    table = at.dataframe[0].value
    assert list(table["sync_id"]) == [sync_id] and list(table["status"]) == ["completed"]
    assert list(table["error_message"]) == [""]  # no error: an empty cell, never `None`
    assert table["rows"].iloc[0] == jobs[0]["stats"]["rows_processed"]
    assert at.json[-1].value and sync_id in at.json[-1].value
    [tables] = [m for m in at.multiselect if m.label == "Tables"]
    tables.select(f"{DEMO_SCHEMA}.ORDERS").run()
    assert_clean(at)

    open_page(at, "pages/preview.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows in DuckDB"] == f"{jobs[0]['stats']['rows_processed']:,}"
    assert metrics["Last sync"] == "completed"
    # the Last sync tab: the job as labelled fields (its raw JSON only behind an expander)
    assert [t.label for t in at.tabs][2] == "Last sync"
    fields = at.table[0].value
    assert fields.loc["Sync id", "value"] == sync_id and fields.loc["Status", "value"] == "completed"
    assert len(at.json) == 1 and at.expander[-1].label == "Raw record (JSON)"
    button(at, "Summarize").click()  # SUMMARIZE scans the table: only on request
    at.run()
    first_rows, summary = at.dataframe[0].value, at.dataframe[1].value
    assert 0 < len(first_rows) <= 100
    assert set(summary["column_name"]) == set(first_rows.columns)

    at.text_area[0].input(f'SELECT count(*) AS n FROM "{DEMO_SCHEMA}"."ORDERS"')
    button(at, "Run query").click()
    at.run()
    assert_clean(at)
    assert at.dataframe[-1].value["n"].tolist() == [str(jobs[0]["stats"]["rows_processed"])]
    downloads = [d.proto.label for d in at.get("download_button")]
    assert downloads == ["Download CSV", "Download Parquet"]

    at.text_area[0].input(f'DROP TABLE "{DEMO_SCHEMA}"."ORDERS"')
    button(at, "Run query").click()
    at.run()
    assert_clean(at)
    assert "read-only" in at.error[0].value
    assert Store(ui_env / "sfduck.duckdb").synced_tables() == [(DEMO_SCHEMA, "ORDERS")]


def test_analyst_sees_history_and_previews_with_sql(ui_env: Path) -> None:
    admin = logged_in("admin")
    register(admin, "ORDERS")
    start_sync(admin, "ORDERS")
    wait_for_jobs(ui_env / "sfduck.duckdb")

    at = logged_in("analyst")
    open_page(at, "pages/history.py")
    assert at.get("plotly_chart")
    open_page(at, "pages/preview.py")
    at.text_area[0].input("SELECT * FROM read_csv('/etc/passwd')")
    button(at, "Run query").click()
    at.run()
    assert_clean(at)
    assert "reads only the synced tables: the table function read_csv() is not allowed" in at.error[0].value


def test_empty_history_and_preview_explain_what_to_do(ui_env: Path) -> None:
    at = logged_in("analyst")
    open_page(at, "pages/history.py")
    assert "No sync has run yet" in at.info[0].value
    open_page(at, "pages/preview.py")
    assert "No table has been synced yet" in at.info[0].value


# --- the SQL box's limits (issue 9) ---------------------------------------------------------------


def table_synced_by_hand(ui_env: Path) -> None:
    """A table in the DuckDB file as a sync would leave it, without the time a sync takes."""
    with Store(ui_env / "sfduck.duckdb").connect() as con:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{DEMO_SCHEMA}"')
        con.execute(f'CREATE TABLE "{DEMO_SCHEMA}"."WIDE" AS SELECT range AS id, repeat(\'x\', 10000) AS s '
                    "FROM range(3000)")


def run_sql(at: AppTest, sql: str) -> AppTest:
    at.text_area[0].input(sql)
    button(at, "Run query").click()
    at.run()
    assert_clean(at)
    return at


def preview_as_analyst(ui_env: Path) -> AppTest:
    table_synced_by_hand(ui_env)
    return open_page(logged_in("analyst"), "pages/preview.py")


def test_sql_box_shows_types_that_pandas_cannot_as_text(ui_env: Path) -> None:
    at = run_sql(preview_as_analyst(ui_env),
                 "SELECT INTERVAL '1 day 2 hours' AS iv, union_value(num := 2)::UNION(num INT, str VARCHAR) AS un, "
                 "'infinity'::DATE AS d_inf, 170141183460469231731687303715884105727::HUGEINT AS hi, "
                 "{'a': 1, 'b': [1, 2]} AS st, MAP {'k': 1} AS mp, [1, 2] AS li, '\\x00'::BLOB AS bl, 7 AS n")
    assert not at.error, texts(at)
    row = at.dataframe[-1].value.iloc[0].to_dict()
    assert (row["iv"], row["un"], row["d_inf"], row["mp"], row["li"]) == ("1 day 02:00:00", "2", "infinity",
                                                                           "{k=1}", "[1, 2]")
    assert row["n"] == "7" and row["bl"] == "0x00" and row["hi"] == "170141183460469231731687303715884105727"
    assert [d.proto.label for d in at.get("download_button")] == ["Download CSV", "Download Parquet"]


def test_sql_box_says_when_the_byte_cap_cut_the_result(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFDUCK_SQL_MAX_BYTES", str(1 << 20))
    at = preview_as_analyst(ui_env)
    assert "at most 10,000 rows and 1 MB" in texts(at)
    run_sql(at, f'SELECT * FROM "{DEMO_SCHEMA}"."WIDE"')
    assert not at.error, texts(at)
    assert 0 < len(at.dataframe[-1].value) < 3000
    assert "cut at 1 MB of data; there are more rows" in texts(at)


def test_sql_box_says_when_the_servers_total_cut_or_refused_the_result(ui_env: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFDUCK_SQL_MAX_BYTES", str(4 << 20))
    monkeypatch.setenv("SFDUCK_SQL_TOTAL_BYTES", str(int(1.5 * (1 << 20))))
    monkeypatch.setattr(preview_core, "_BUDGET", preview_core._ResultBudget())  # not the earlier tests' results
    at = preview_as_analyst(ui_env)
    run_sql(at, f'SELECT * FROM "{DEMO_SCHEMA}"."WIDE"')
    assert not at.error, texts(at)
    assert "cut: the results the server holds for everyone are near their limit" in texts(at)
    other = open_page(logged_in("admin"), "pages/preview.py")  # another session, while the first keeps its result
    run_sql(other, f'SELECT * FROM "{DEMO_SCHEMA}"."WIDE"')
    assert "results held in this server for everyone reach their limit" in other.error[0].value


def test_sql_box_refuses_a_second_query_of_the_same_user(ui_env: Path) -> None:
    at = preview_as_analyst(ui_env)
    with preview_core._SLOTS.claim("analyst", 2):  # as if another tab of this user were running one
        run_sql(at, "SELECT 1 AS x")
    assert "You already have a query running" in at.error[0].value
    run_sql(at, "SELECT 1 AS x")
    assert not at.error and at.dataframe[-1].value["x"].tolist() == ["1"]


def test_summary_only_on_request_and_computed_once(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    summarize = preview_core.summarize
    monkeypatch.setattr(preview_core, "summarize", lambda *args: calls.append(args[2]) or summarize(*args))
    at = preview_as_analyst(ui_env)
    assert len(at.dataframe) == 1 and calls == []  # the first rows only
    button(at, "Summarize").click()
    at.run()
    assert_clean(at)
    assert set(at.dataframe[1].value["column_name"]) == {"id", "s"}
    at.run()
    at.run()
    assert len(at.dataframe) == 2 and calls == ["WIDE"]


def test_sql_box_with_a_relative_database_path(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's working directory is not the project's, where the child process runs."""
    monkeypatch.setenv("SFDUCK_DUCKDB_PATH", "sfduck.duckdb")  # relative to ui_env, the cwd
    at = run_sql(preview_as_analyst(ui_env), f'SELECT count(*) AS n FROM "{DEMO_SCHEMA}"."WIDE"')
    assert not at.error, texts(at)
    assert at.dataframe[-1].value["n"].tolist() == ["3000"]


# --- schedules and "sync everything" ----------------------------------------------------------------


def test_schedules_page_admin_creates_pauses_and_analyst_only_reads(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    open_page(at, "pages/schedules.py")
    assert any("No table has a schedule yet" in i.value for i in at.info)
    [cron] = [t for t in at.text_input if t.label == "Cron expression"]
    cron.input("61 * * * *")
    button(at, "Save schedule").click()
    at.run()
    assert_clean(at)
    assert at.error and "Invalid cron expression" in at.error[0].value
    [cron] = [t for t in at.text_input if t.label == "Cron expression"]
    cron.input("*/30 * * * *")
    button(at, "Save schedule").click()
    at.run()
    assert_clean(at)
    assert any("Saved" in s.value and "every" not in s.value for s in at.success), texts(at)
    table = at.dataframe[0].value
    assert list(table["when"]) == ["cron */30 * * * * (UTC)"] and list(table["next run (UTC)"]) != ["paused"]
    assert list(table["changed by"]) == ["admin"]
    button(at, "Pause").click()
    at.run()
    assert_clean(at)
    assert list(at.dataframe[0].value["next run (UTC)"]) == ["paused"]

    analyst = logged_in("analyst")
    open_page(analyst, "pages/schedules.py")
    assert list(analyst.dataframe[0].value["table"]) == [f"{DEMO_SCHEMA}.ORDERS"]
    assert not [b for b in analyst.button if b.label in ("Save schedule", "Pause", "Resume", "Delete schedule")]


def test_sync_every_registered_table_now(ui_env: Path) -> None:
    at = logged_in("admin")
    for table in ("ORDERS", "EMPTY_TABLE"):
        register(at, table)
    open_page(at, "pages/sync.py")
    button(at, "Start 2 sync(s)").click()
    at.run()
    assert_clean(at)
    jobs = wait_for_jobs(ui_env / "sfduck.duckdb")
    assert sorted(j["table_name"] for j in jobs) == ["EMPTY_TABLE", "ORDERS"]
    assert {(j["status"], j["trigger"], j["started_by"]) for j in jobs} == {("completed", "dashboard", "admin")}
    open_page(at, "pages/history.py")
    assert set(at.dataframe[0].value["started_by"]) == {"admin"}
    select(at, "Started from", "dashboard")
    assert_clean(at)
    assert len(at.dataframe[0].value) == 2


def test_admin_runs_the_connection_checks_on_request(ui_env: Path) -> None:
    at = open_page(logged_in("admin"), "pages/connection.py")
    assert not at.success and not at.error and "Run checks" in texts(at)  # nothing runs on its own
    button(at, "Run checks").click()
    at.run()
    assert_clean(at)
    assert "Nothing failed" in texts(at)
    verdicts = [e.value for e in (*at.success, *at.warning, *at.error)]
    assert sorted(v.split("**")[1] for v in verdicts) == sorted(
        ["PASS · settings", "PASS · login", "PASS · rights", "WARN · round trip", "PASS · speed"])
    at.run()  # a rerun shows the same report without running the checks again
    assert len(at.success) == 4


def test_analyst_cannot_open_the_connection_page(ui_env: Path) -> None:
    direct = AppTest.from_file(str(ROOT / "pages/connection.py"), default_timeout=RUN_TIMEOUT_S)
    direct.session_state[SESSION_STATE_KEY] = session_for(ui_env, "analyst")
    direct.run()
    assert_clean(direct)
    assert "needs the admin role" in direct.error[0].value
    assert not [b for b in direct.button if b.label == "Run checks"]


def test_a_schedule_entered_in_minutes_reads_back_in_minutes_with_its_next_three_runs(ui_env: Path) -> None:
    at = logged_in("admin")
    register(at, "ORDERS")
    open_page(at, "pages/schedules.py")
    assert [t.label for t in at.text_input] == ["Cron expression", "Time zone of the cron expression"]
    assert not [n for n in at.number_input if n.label == "Every (minutes)"]  # only what the timing needs
    [kind] = [r for r in at.radio if r.label == "Timing"]
    kind.set_value("every N minutes").run()
    assert not [t for t in at.text_input if t.label == "Cron expression"]
    [minutes] = [n for n in at.number_input if n.label == "Every (minutes)"]
    minutes.set_value(15)
    button(at, "Save schedule").click()
    at.run()
    assert_clean(at)
    assert any("every 15 min; next runs" in s.value for s in at.success), texts(at)
    table = at.dataframe[0].value
    assert list(table["when"]) == ["every 15 min"]
    assert re.search(r"Now: \*\*every 15 min\*\*, full\. Next three runs: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC(, )?){3}",
                     texts(at))
    assert [n.value for n in at.number_input if n.label == "Every (minutes)"] == [15]
