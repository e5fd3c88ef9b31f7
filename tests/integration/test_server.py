"""The server as users run it: `./scripts/dashboard.sh` serving the dashboard and the API in one
process, driven by the spec's curl commands and by the CLI's --server mode, and stopped by SIGTERM
in the middle of a sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfduck_core.store import Store
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import TARGETS, TEST_DATA_ROWS, env_for, read_only
from tests.integration.test_api import PASSWORDS, write_users
from tests.serving import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    env: dict[str, str]
    db: Path


def start_server(emulator: EmulatorSettings, tmp: Path, target_kind: str = "file",
                 **extra_env: str) -> Server:
    env = env_for(emulator, tmp, target_kind)
    env.update(extra_env)
    write_users(tmp / "users.yaml")
    port = free_port()
    env.update(SFDUCK_USERS_FILE=str(tmp / "users.yaml"), SFDUCK_PORT=str(port), SFDUCK_ADDRESS="127.0.0.1")
    log = open(tmp / "server.log", "a")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(["./scripts/dashboard.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/api/v1/health", process, tmp / "server.log", 120)
    return Server(url, process, env, Path(env["SFDUCK_DUCKDB_PATH"]))


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()


@pytest.fixture(scope="module")
def server(emulator: EmulatorSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(emulator, tmp_path_factory.mktemp("server"))
    yield running
    stop(running)


def curl(*args: str) -> dict | list:
    out = subprocess.run(["curl", "-s", "--max-time", "60", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_spec_curl_commands_verbatim(server: Server, emulator: EmulatorSettings) -> None:
    api, schema = f"{server.url}/api/v1", emulator.schema
    token = curl("-X", "POST", f"{api}/auth/token", "-H", "Content-Type: application/x-www-form-urlencoded",
                 "-d", f"username=ops&password={PASSWORDS['ops']}")["access_token"]
    auth = f"Authorization: Bearer {token}"
    tables = curl("-X", "GET", f"{api}/sync/tables/{schema}", "-H", auth)
    assert {"table_name": "data", "row_count": TEST_DATA_ROWS}.items() <= next(
        t for t in tables if t["table_name"] == "data").items()
    reg = curl("-X", "POST", f"{api}/sync/tables/register", "-H", auth, "-H", "Content-Type: application/json",
               "-d", json.dumps({"table_name": "data", "schema_name": schema}))
    assert reg["status"] == "active"
    started = curl("-X", "POST", f"{api}/sync/start", "-H", auth, "-H", "Content-Type: application/json",
                   "-d", json.dumps({"table_name": "data", "schema_name": schema, "strategy": "full"}))
    deadline = time.monotonic() + 120
    while (job := curl("-X", "GET", f"{api}/sync/status/{started['sync_id']}", "-H", auth))["status"] in (
            "pending", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "completed", job["error_message"]
    assert job["stats"]["rows_processed"] == job["stats"]["total_rows"] == TEST_DATA_ROWS
    history = curl("-X", "GET", f"{api}/sync/tables/status/{reg['table_id']}", "-H", auth)
    assert history["jobs"][0]["sync_id"] == started["sync_id"]
    gone = curl("-X", "DELETE", f"{api}/sync/tables/{schema}/data", "-H", auth)
    assert gone["status"] == "inactive"
    # the dashboard is served by the same process
    with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as r:
        assert r.read() == b"ok"


def test_the_cli_drives_the_running_server(server: Server, emulator: EmulatorSettings) -> None:
    env = {**server.env, "SFDUCK_API_USER": "ops", "SFDUCK_API_PASSWORD": PASSWORDS["ops"],
           "SFDUCK_LOCK_TIMEOUT": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sfduck_core", "--server", server.url, *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    out = cli("register", emulator.schema, "ORDERS")
    assert out.returncode == 0, out.stderr
    out = cli("sync", emulator.schema, "ORDERS")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "completed" and job["trigger"] == "cli" and job["started_by"] == "ops"
    assert json.loads(cli("status", job["sync_id"]).stdout)["sync_id"] == job["sync_id"]
    assert [j["sync_id"] for j in json.loads(cli("history", emulator.schema, "ORDERS").stdout)] == [job["sync_id"]]
    again = cli("sync", emulator.schema, "ORDERS")  # unchanged since: skipped, a success for the exit code
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "skipped", again.stderr
    bad = cli("sync", emulator.schema, "NOT_REGISTERED")
    assert bad.returncode == 1 and bad.stderr.startswith("error: The server refused (409)")
    assert "Traceback" not in bad.stderr
    env["SFDUCK_API_PASSWORD"] = "wrong"
    denied = cli("history", emulator.schema, "ORDERS")
    assert denied.returncode == 1 and "(401)" in denied.stderr


def test_sigterm_cancels_running_syncs_and_exits_within_30_s(emulator: EmulatorSettings, sf, tmp_path: Path
                                                             ) -> None:
    server = start_server(emulator, tmp_path)
    try:
        api, schema = f"{server.url}/api/v1", emulator.schema
        token = curl("-X", "POST", f"{api}/auth/token", "-d",
                     f"username=ops&password={PASSWORDS['ops']}")["access_token"]
        auth = f"Authorization: Bearer {token}"
        body = json.dumps({"table_name": "data", "schema_name": schema, "transport": "stage", "force": True})
        curl("-X", "POST", f"{api}/sync/tables/register", "-H", auth, "-H", "Content-Type: application/json",
             "-d", json.dumps({"table_name": "data", "schema_name": schema}))
        first = curl("-X", "POST", f"{api}/sync/start", "-H", auth, "-H", "Content-Type: application/json", "-d",
                     body)
        while curl(f"{api}/sync/status/{first['sync_id']}", "-H", auth)["status"] in ("pending", "running"):
            time.sleep(0.1)
        sf.cursor().execute("ALTER ACCOUNT SET SFDUCK_UNLOAD_DELAY_S = 120")  # the next unload waits
        try:
            second = curl("-X", "POST", f"{api}/sync/start", "-H", auth, "-H", "Content-Type: application/json",
                          "-d", body)
            deadline = time.monotonic() + 60
            while (curl(f"{api}/sync/status/{second['sync_id']}", "-H", auth).get("progress") or {}).get(
                    "phase") != "unloading":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
        finally:
            sf.cursor().execute("ALTER ACCOUNT UNSET SFDUCK_UNLOAD_DELAY_S")  # the unload returns
        server.process.wait(30)
        assert time.monotonic() - signalled < 30
        store = Store(server.db)
        job = store.get_job(second["sync_id"])
        assert job["status"] == "cancelled", job
        # issue 18 item 14: not "Cancelled by an admin"
        assert job["error_message"].startswith("Cancelled: the server was stopping"), job
        assert store.get_job(first["sync_id"])["status"] == "completed"
        with store.connect() as con:
            assert store.storage.count_rows(con, schema, "data") == TEST_DATA_ROWS
        assert os.path.getsize(server.db) > 0
    finally:
        stop(server)


def api_session(server: Server) -> tuple[str, str]:
    """The API's base URL and an admin's Authorization header."""
    api = f"{server.url}/api/v1"
    token = curl("-X", "POST", f"{api}/auth/token", "-d", f"username=ops&password={PASSWORDS['ops']}")["access_token"]
    return api, f"Authorization: Bearer {token}"


def post(url: str, auth: str, body: dict | None = None) -> tuple[int, dict]:
    """POST a JSON body; (HTTP status, answer)."""
    out = subprocess.run(["curl", "-s", "--max-time", "60", "-w", "\n%{http_code}", "-X", "POST", url, "-H", auth,
                          "-H", "Content-Type: application/json", "-d", json.dumps(body or {})],
                         capture_output=True, text=True, check=True)
    answer, code = out.stdout.rsplit("\n", 1)
    return int(code), json.loads(answer)


def wait_for_job(api: str, auth: str, sync_id: str) -> dict:
    deadline = time.monotonic() + 120
    while (job := curl(f"{api}/sync/status/{sync_id}", "-H", auth))["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


FREEZE_HOOK = Path(__file__).resolve().parent / "freeze_hook"


@pytest.mark.parametrize("target_kind", TARGETS)
@pytest.mark.parametrize("transport", ["stage", "arrow"])
def test_a_server_killed_mid_sync_recovers_the_job_at_restart(emulator: EmulatorSettings, tmp_path: Path,
                                                              transport: str, target_kind: str) -> None:
    """Issue 18 item 1: after SIGKILL the dead job was `running` for ever (new syncs 409, cancel 404).
    The server is frozen (tests/integration/freeze_hook) with the sync's downloads on disk, killed,
    and started again: the job ends failed, the table syncs again at once, the downloads are gone."""
    flag = tmp_path / "freeze"
    hook = {"PYTHONPATH": f"{FREEZE_HOOK}:{ROOT}", "SFDUCK_TEST_FREEZE_PHASE": "downloading",
            "SFDUCK_TEST_FREEZE_FLAG": str(flag)}
    server = start_server(emulator, tmp_path, target_kind, **hook)
    schema = emulator.schema
    body = {"table_name": "data", "schema_name": schema, "transport": transport, "force": True}
    try:
        api, auth = api_session(server)
        assert post(f"{api}/sync/tables/register", auth, {"table_name": "data", "schema_name": schema})[0] == 200
        code, first = post(f"{api}/sync/start", auth, body)
        assert code == 202, first
        assert wait_for_job(api, auth, first["sync_id"])["status"] == "completed"
        flag.touch()  # the next sync freezes with its downloads on disk
        code, dead = post(f"{api}/sync/start", auth, body)
        assert code == 202, dead
        deadline = time.monotonic() + 120
        while (job := curl(f"{api}/sync/status/{dead['sync_id']}", "-H", auth)).get("progress") is None or (
                job["progress"]["phase"] != "downloading" or not (job["progress"]["files_done"]
                                                                  or job["progress"]["rows_done"])):
            assert time.monotonic() < deadline and job["status"] in ("pending", "running"), job
            time.sleep(0.05)
        downloads = Path(server.env["SFDUCK_DATA_DIR"]) / "tmp" / dead["sync_id"]
        assert any(downloads.iterdir())  # the dead sync's files, which the restart must remove
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
    finally:
        stop(server)
    flag.unlink()

    server = start_server(emulator, tmp_path, target_kind)
    try:
        api, auth = api_session(server)
        assert not downloads.exists()  # removed at start, before any new sync
        job = curl(f"{api}/sync/status/{dead['sync_id']}", "-H", auth)
        assert job["status"] == "failed", job
        assert "the server stopped during this sync" in job["error_message"].lower(), job
        code, refused = post(f"{api}/sync/cancel/{dead['sync_id']}", auth)
        assert code != 404 and "not running" in refused["detail"], refused  # found, and over
        code, again = post(f"{api}/sync/start", auth, body)
        assert code == 202, again
        job = wait_for_job(api, auth, again["sync_id"])
        assert job["status"] == "completed", job
        assert job["stats"]["rows_processed"] == TEST_DATA_ROWS
    finally:
        stop(server)
    con = read_only(server.env)
    try:
        assert con.execute(f'SELECT count(*) FROM "{schema}"."data"').fetchone()[0] == TEST_DATA_ROWS
    finally:
        con.close()
