"""The command line explains itself: mistyped names get "did you mean", errors name commands and
flags, `history` of an unknown table is an error; and in demo mode a command uses the running
server (whose start banner says how to reach it) instead of booting an emulator of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sfduck_core.local_server import record_path
from sfduck_emulator.settings import DEMO_SCHEMA, EmulatorSettings
from tests.integration.conftest import env_for
from tests.serving import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfduck_core", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def fails_with(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert result.returncode == 1 and result.stdout == "", (result.stdout, result.stderr)
    [line] = result.stderr.strip().splitlines()
    assert all(part in line for part in parts), line
    return line


def test_names_differing_only_in_case_get_a_suggestion(emulator: EmulatorSettings, tmp_path: Path) -> None:
    env, schema = env_for(emulator, tmp_path), emulator.schema
    fails_with(cli(env, "register", schema, "orders"), "Did you mean ORDERS?")
    fails_with(cli(env, "tables", schema.lower()), f"Did you mean {schema}?")
    fails_with(cli(env, "register", schema, "ORDERS", "--incremental-key", "updated_at"), "Did you mean UPDATED_AT?")
    assert cli(env, "register", schema, "ORDERS").returncode == 0
    fails_with(cli(env, "sync", schema, "orders"), f"Did you mean {schema}.ORDERS?")


def test_history_of_an_unknown_table_is_an_error(emulator: EmulatorSettings, tmp_path: Path) -> None:
    env, schema = env_for(emulator, tmp_path), emulator.schema
    fails_with(cli(env, "history", schema, "NOPE"), "never registered")
    assert cli(env, "register", schema, "ORDERS").returncode == 0
    fails_with(cli(env, "history", schema, "Orders"), f"Did you mean {schema}.ORDERS?")
    never_synced = cli(env, "history", schema, "ORDERS")
    assert never_synced.returncode == 0 and json.loads(never_synced.stdout) == []


def test_errors_name_commands_and_flags(emulator: EmulatorSettings, tmp_path: Path) -> None:
    env, schema = env_for(emulator, tmp_path), emulator.schema
    line = fails_with(cli(env, "sync", schema, "data"), f"sfduck register {schema} data")
    assert "POST" not in line and "python -m" not in line
    assert cli(env, "register", schema, "data").returncode == 0
    line = fails_with(cli(env, "sync", schema, "data", "--strategy", "incremental"), "--incremental-key")
    assert "incremental_key" not in line
    assert json.loads(cli(env, "history", schema, "data").stdout) == []  # refused before a job existed


def demo_env(tmp_path: Path) -> dict[str, str]:
    """Demo mode (no Snowflake account anywhere) on a state folder of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "SFDUCK_"))}
    env.update(SFDUCK_DUCKDB_PATH=str(tmp_path / "data" / "sfduck.duckdb"), SFDUCK_DATA_DIR=str(tmp_path / "data"),
               SFDUCK_USERS_FILE=str(tmp_path / "no-users.yaml"), SFDUCK_DEMO_ROWS="2000", PYTHONPATH=str(ROOT),
               HOME=str(tmp_path))
    return env


def test_demo_commands_use_the_running_server(tmp_path: Path) -> None:
    env, port = demo_env(tmp_path), free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "sfduck_server/app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/api/v1/health", server, log, 180)
        printed = log.read_text()
        for expected in ("sfduck server (demo mode", f"dashboard:     {url}/", f"API:           {url}/api/v1",
                         f"{url}/api/v1/docs", "admin / admin, analyst / analyst",
                         str(tmp_path / "data" / "sfduck.duckdb")):
            assert expected in printed, printed
        assert json.loads(record_path(tmp_path / "data").read_text())["url"] == url

        # no --server: the command finds the server and runs there, as the demo admin
        assert cli(env, "register", DEMO_SCHEMA, "ORDERS").returncode == 0
        synced = cli(env, "sync", DEMO_SCHEMA, "ORDERS")
        assert synced.returncode == 0, synced.stderr
        job = json.loads(synced.stdout)
        assert (job["status"], job["trigger"], job["started_by"]) == ("completed", "cli", "admin")
        described = cli(env, "describe", DEMO_SCHEMA, "ORDERS")  # describe goes to the API too
        assert described.returncode == 0, described.stderr
        assert json.loads(described.stdout)["primary_key"] == ["ORDER_ID"]
        fails_with(cli(env, "history", DEMO_SCHEMA, "NOPE"), "never registered")
        listed = cli(env, "tables")  # the schema: the server's default
        assert listed.returncode == 0 and "ORDERS" in {t["table_name"] for t in json.loads(listed.stdout)}
        as_analyst = {**env, "SFDUCK_API_USER": "analyst", "SFDUCK_API_PASSWORD": "analyst"}
        status = cli(as_analyst, "--server", url, "status", job["sync_id"])
        assert status.returncode == 0 and json.loads(status.stdout)["sync_id"] == job["sync_id"]
        local = cli(env, "--server", url, "reader", "--sql")
        assert local.returncode == 0 and "runs locally" in local.stderr and "sfduck.duckdb" in local.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert not record_path(tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["doctor", "reader"])
def test_local_only_commands_say_so_in_their_help(command: str) -> None:
    out = cli(dict(os.environ, PYTHONPATH=str(ROOT)), command, "--help")
    assert out.returncode == 0 and "runs locally" in " ".join(out.stdout.split())
