"""Issue 18 item 4: demo mode's public logins (admin/admin) are refused on an address other machines
can reach, unless the operator says otherwise explicitly; real server processes, as operators start them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]


def demo_server(tmp: Path, address: str, **extra: str) -> tuple[subprocess.Popen, str]:
    tmp.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "SFDUCK_"))}
    port = free_port()
    env.update(SFDUCK_DUCKDB_PATH=str(tmp / "sfduck.duckdb"), SFDUCK_DATA_DIR=str(tmp / "data"),
               SFDUCK_USERS_FILE=str(tmp / "no-users.yaml"), SFDUCK_DEMO_ROWS="1000", SFDUCK_PORT=str(port),
               SFDUCK_ADDRESS=address, PYTHONPATH=str(ROOT), **extra)
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(["./scripts/dashboard.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, tuple[subprocess.Popen, str]]]:
    started = {"exposed": demo_server(tmp_path / "a", "0.0.0.0"),
               "allowed": demo_server(tmp_path / "b", "0.0.0.0", SFDUCK_DEMO_ALLOW_REMOTE="1"),
               "loopback": demo_server(tmp_path / "c", "127.0.0.1")}
    try:
        for name, (process, url) in started.items():
            wait_until_healthy(f"{url}/api/v1/health", process, tmp_path / name[0] / "server.log", 180)
        yield started
    finally:
        for process, _ in started.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in started.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def demo_login(url: str, host: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/api/v1/auth/token", data=b"username=admin&password=admin",
                                     headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_demo_logins_are_refused_on_every_interface_unless_allowed(servers: dict, tmp_path: Path) -> None:
    status, body = demo_login(servers["exposed"][1])
    assert status == 401
    assert "0.0.0.0" in body["detail"] and "SFDUCK_DEMO_ALLOW_REMOTE=1" in body["detail"]
    assert "127.0.0.1" in body["detail"]  # and how to serve it locally instead
    assert "SFDUCK_DEMO_ALLOW_REMOTE=1" in (tmp_path / "a" / "server.log").read_text()  # said at start-up too
    assert demo_login(servers["allowed"][1])[0] == 200
    assert demo_login(servers["loopback"][1])[0] == 200


def test_a_loopback_demo_answers_only_requests_addressed_to_loopback(servers: dict) -> None:
    """DNS rebinding: a web page the operator opens points its own name at 127.0.0.1 and calls the demo;
    its requests carry that name as Host. Before, it logged in as admin/admin like the operator."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = servers["loopback"][1]
    port = url.rsplit(":", 1)[1]
    status, body = demo_login(url, f"rebind.example:{port}")
    assert status == 403 and "SFDUCK_DEMO_ALLOW_REMOTE=1" in body["detail"], body
    def websocket(host: str) -> None:
        """Open the dashboard's websocket as a page of `host` would, over a connection to loopback."""
        with connect(f"ws://{host}:{port}/_stcore/stream", sock=socket.create_connection(("127.0.0.1", int(port))),
                     subprotocols=["streamlit"], open_timeout=30):
            pass

    websocket("127.0.0.1")
    with pytest.raises(InvalidStatus):  # the dashboard's websocket is refused at the handshake too
        websocket("rebind.example")
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert demo_login(url, host)[0] == 200, host
    assert demo_login(servers["allowed"][1], "rebind.example")[0] == 200  # the operator said anyone may be admin
