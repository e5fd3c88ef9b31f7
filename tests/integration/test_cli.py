"""The command line as automation uses it: JSON on stdout, one-line errors, exit codes, and a
sync killed with SIGKILL at the worst moments."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfduck_emulator.settings import DEMO_SCHEMA, EmulatorSettings
from tests.integration.conftest import TEST_DATA_ROWS, env_for, read_only

ROOT = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfduck_core", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def env(emulator: EmulatorSettings, tmp_path: Path, target_kind: str) -> dict[str, str]:
    return env_for(emulator, tmp_path, target_kind)


def test_tables_register_sync_status_history_unregister(env: dict[str, str], emulator: EmulatorSettings) -> None:
    tables = cli(env, "tables", emulator.schema)
    assert tables.returncode == 0, tables.stderr
    listed = {t["table_name"]: t for t in json.loads(tables.stdout)}
    assert listed["data"]["row_count"] == TEST_DATA_ROWS
    assert set(listed["data"]) >= {"table_name", "row_count", "size_bytes", "last_modified"}

    reg = cli(env, "register", emulator.schema, "ORDERS", "--incremental-key", "UPDATED_AT")
    assert reg.returncode == 0, reg.stderr
    registration = json.loads(reg.stdout)
    assert registration["status"] == "active" and registration["table_name"] == "ORDERS"
    assert registration["table_id"]

    synced = cli(env, "sync", emulator.schema, "ORDERS", "--transport", "arrow", "--progress")
    assert synced.returncode == 0, synced.stderr
    job = json.loads(synced.stdout)
    assert job["status"] == "completed" and job["stats"]["rows_processed"] > 0
    assert "[loading]" in synced.stderr  # progress goes to stderr, stdout stays JSON

    status = json.loads(cli(env, "status", job["sync_id"]).stdout)
    assert status["sync_id"] == job["sync_id"] and status["status"] == "completed"
    history = json.loads(cli(env, "history", emulator.schema, "ORDERS").stdout)
    assert [h["sync_id"] for h in history] == [job["sync_id"]]
    gone = json.loads(cli(env, "unregister", emulator.schema, "ORDERS").stdout)
    assert gone["status"] == "inactive"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("register", DEMO_SCHEMA, "NOPE"), "does not exist"),
        (("sync", DEMO_SCHEMA, "data"), "not registered"),
        (("status", "no-such-id"), "No sync job"),
        (("sync", DEMO_SCHEMA, "data", "--where", "1=1; DROP TABLE x"), "not registered"),
    ],
)
def test_failures_are_one_line_without_traceback(env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    result = cli(env, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in result.stderr


def test_wrong_password_is_reported_without_the_password(env: dict[str, str]) -> None:
    env = {**env, "SNOWFLAKE_PASSWORD": "not-the-password-123"}
    result = cli(env, "tables")
    assert result.returncode == 1
    assert "incorrect username or password" in result.stderr
    assert "not-the-password-123" not in result.stderr


def test_unreachable_snowflake_is_a_clear_error(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**env, "SNOWFLAKE_PORT": str(port), "SNOWFLAKE_LOGIN_TIMEOUT": "5"}
    result = cli(env, "tables", timeout=60)
    assert result.returncode == 1
    assert "Cannot reach Snowflake" in result.stderr
    assert env["SNOWFLAKE_PASSWORD"] not in result.stderr


def _table_bytes(env: dict[str, str], schema: str, table: str) -> list:
    con = read_only(env)
    try:
        return con.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1').fetchall()
    finally:
        con.close()


@contextlib.contextmanager
def paused_sync(env: dict[str, str], schema: str, table: str, transport: str, phase: str) -> Iterator[None]:
    """A sync of `table` in a process of its own, paused at `phase` (tests/integration/sync_until.py)
    for the body, then killed with SIGKILL, as a power cut would stop it."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "integration" / "sync_until.py"), schema, table,
                             transport, phase], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "PAUSED", proc.stderr.read() if proc.poll() else "no pause"
        yield
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.parametrize(("transport", "phase"), [("stage", "downloading"), ("stage", "loading"),
                                                  ("stage", "swapping"), ("arrow", "downloading"),
                                                  ("arrow", "loading")])
def test_sigkill_mid_sync_leaves_the_previous_table_whole(env: dict[str, str], emulator: EmulatorSettings,
                                                          transport: str, phase: str) -> None:
    assert cli(env, "register", emulator.schema, "data").returncode == 0
    first = cli(env, "sync", emulator.schema, "data", "--quiet")
    assert first.returncode == 0, first.stderr
    before = _table_bytes(env, emulator.schema, "data")
    assert len(before) == TEST_DATA_ROWS

    with paused_sync(env, emulator.schema, "data", transport, phase):
        pass  # killed where it paused

    assert _table_bytes(env, emulator.schema, "data") == before
    history = json.loads(cli(env, "history", emulator.schema, "data").stdout)
    assert history[0]["status"] == "failed" and "The sfduck command stopped during this sync" in history[0]["error_message"]
    again = cli(env, "sync", emulator.schema, "data", "--quiet", "--transport", transport)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["stats"]["rows_processed"] == TEST_DATA_ROWS
    con = read_only(env)
    leftovers = con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__sfduck%'").fetchall()
    con.close()
    assert leftovers == []


@pytest.mark.parametrize("transport", ["stage", "arrow"])
def test_sigkill_after_the_data_commit_settles_the_job_completed_with_its_stats(
        env: dict[str, str], emulator: EmulatorSettings, transport: str) -> None:
    """Issue 21 item 3: the data committed, then the process died before the metadata database
    heard of it. The data's commit record settles the job `completed`, with the stats it had, and
    the table's status follows (the next sync of the table is not blocked)."""
    assert cli(env, "register", emulator.schema, "data").returncode == 0
    with paused_sync(env, emulator.schema, "data", transport, "committed"):
        pass  # killed where it paused

    assert len(_table_bytes(env, emulator.schema, "data")) == TEST_DATA_ROWS  # the data is in
    history = cli(env, "history", emulator.schema, "data")
    assert history.returncode == 0, history.stderr
    [job] = json.loads(history.stdout)
    assert job["status"] == "completed" and job["error_message"] is None
    assert job["stats"]["rows_processed"] == TEST_DATA_ROWS and job["transport"] == transport
    if env.get("SFDUCK_TARGET"):
        assert job["stats"]["snapshot_id"] is not None  # the lake's snapshot of that commit
    again = cli(env, "sync", emulator.schema, "data", "--quiet")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "skipped"  # the settled job is the copy's last success


def test_a_failed_sync_names_its_job_which_status_then_shows(env: dict[str, str], emulator: EmulatorSettings,
                                                             sf, source_table) -> None:
    table = source_table("ID NUMBER(38,0)", "VANISH")
    assert cli(env, "register", emulator.schema, table).returncode == 0
    sf.cursor().execute(f'DROP TABLE "{emulator.schema}"."{table}"')
    result = cli(env, "sync", emulator.schema, table)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1  # no progress when stderr is not a terminal: cron mails one line
    line = lines[0]
    assert line.startswith("error: Sync ") and "does not exist" in line
    sync_id = line.split()[2]
    job = json.loads(cli(env, "status", sync_id).stdout)
    assert job["status"] == "failed" and "does not exist" in job["error_message"]


def test_cli_syncs_are_audited_and_a_failure_is_notified(env: dict[str, str], emulator: EmulatorSettings, sf,
                                                          source_table) -> None:
    from tests.integration.test_schedules import Receiver

    receiver = Receiver()
    try:
        table = source_table("ID NUMBER(38,0)", "GONE")
        assert cli(env, "register", emulator.schema, table).returncode == 0
        sf.cursor().execute(f'DROP TABLE "{emulator.schema}"."{table}"')
        env = {**env, "SFDUCK_NOTIFY_URLS": receiver.url}
        assert cli(env, "sync", emulator.schema, table).returncode == 1
        [message] = receiver.wait_for(1)
        assert message["type"] == "failure" and table in message["title"] and "does not exist" in message["message"]
        [job] = json.loads(cli(env, "history", emulator.schema, table).stdout)
        assert job["trigger"] == "cli" and job["started_by"]  # the login name of whoever ran it
    finally:
        receiver.server.shutdown()


@pytest.mark.parametrize("transport", ["stage", "arrow"])
def test_the_database_is_free_while_a_sync_downloads(env: dict[str, str], emulator: EmulatorSettings,
                                                     transport: str) -> None:
    """Issue 9 item 11: the write lock is held only while loading, never during the network part."""
    assert cli(env, "register", emulator.schema, "data").returncode == 0
    assert cli(env, "register", emulator.schema, "ORDERS").returncode == 0
    with paused_sync(env, emulator.schema, "data", transport, "downloading"):
        # a writer of the data, in another process, that would fail after waiting 5 s for the file
        other = cli({**env, "SFDUCK_DATA_WAIT": "5"}, "sync", emulator.schema, "ORDERS", "--quiet")
        assert other.returncode == 0, other.stderr
