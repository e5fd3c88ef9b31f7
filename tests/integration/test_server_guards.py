"""Issue 18: the running server (`./scripts/dashboard.sh`, one process) as an attacker meets it:
request bodies capped for every route, forwarded addresses believed only from listed proxies, the
dashboard's session cookie set by the server HttpOnly."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterable, Iterator

import psutil
import pytest

from sfduck_emulator.settings import EmulatorSettings
from tests.integration.test_api import PASSWORDS
from tests.integration.test_server import Server, start_server, stop

CAP = 1 << 20  # the default SFDUCK_MAX_BODY_BYTES


@pytest.fixture(scope="module")
def server(emulator: EmulatorSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(emulator, tmp_path_factory.mktemp("guarded"))
    yield running
    stop(running)


def raw_request(server: Server, head: str, body_chunks: Iterable[bytes] = ()) -> tuple[int, dict, bytes]:
    """Send a request byte by byte as written (no client library fixing it up); (status, headers, body).

    Stops sending as soon as the server has answered, as a client must when refused mid-upload."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # answered already
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
                if b"\r\n\r\n" in answer:
                    head_part, _, rest = answer.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is not None and len(rest) >= length:
                        break
        except ConnectionResetError:
            pass
    head_part, _, rest = answer.partition(b"\r\n\r\n")
    lines = head_part.decode("latin1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def chunked(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = b"x" * min(size, total - sent)
        sent += len(piece)
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("path", ["/api/v1/sync/tables/register", "/api/v1/auth/token", "/", "/_stcore/health",
                                  "/_stcore/upload_file/x/y"])
def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(server: Server, path: str) -> None:
    """Issue 18 item 3: 413 with a JSON detail, for every route, without waiting for the body."""
    status, headers, body = raw_request(server, f"POST {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                                                f"Content-Length: {150 << 20}\n")
    assert status == 413, body
    assert headers["content-type"] == "application/json"
    assert "SFDUCK_MAX_BODY_BYTES" in json.loads(body)["detail"]


def test_a_chunked_body_is_counted_while_it_streams(server: Server) -> None:
    """No Content-Length: 150 MB streamed without a token are cut off at the cap, memory stays flat."""
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    status, _, body = raw_request(server, "POST /api/v1/sync/tables/register HTTP/1.1\nHost: x\n"
                                          "Content-Type: application/json\nTransfer-Encoding: chunked\n",
                                  chunked(150 << 20))
    grown = process.memory_info().rss - before
    assert status == 413, body
    assert grown < 40 << 20, f"the server grew by {grown >> 20} MB"


def test_bodies_within_the_cap_are_served(server: Server) -> None:
    form = "username=ops&password=nope"
    status, _, body = raw_request(server, "POST /api/v1/auth/token HTTP/1.1\nHost: x\nContent-Type: "
                                          f"application/x-www-form-urlencoded\nContent-Length: {len(form)}\n",
                                  iter([form.encode()]))
    assert status == 401, body
    status, _, body = raw_request(server, "POST /api/v1/auth/token HTTP/1.1\nHost: x\nContent-Type: "
                                          "application/x-www-form-urlencoded\nTransfer-Encoding: chunked\n",
                                  iter([b"%x\r\n%s\r\n0\r\n\r\n" % (len(form), form.encode())]))
    assert status == 401, body


def login_status(server: Server, user: str, password: str, headers: dict[str, str]) -> int:
    form = f"username={user}&password={password}"
    extra = "".join(f"{k}: {v}\n" for k, v in headers.items())
    status, _, _ = raw_request(server, "POST /api/v1/auth/token HTTP/1.1\nHost: x\nContent-Type: application/"
                                       f"x-www-form-urlencoded\nContent-Length: {len(form)}\n{extra}", [form.encode()])
    return status


def test_a_local_client_rotating_x_forwarded_for_is_still_throttled(server: Server) -> None:
    """Issue 18 item 5: from 127.0.0.1 (no proxy is listed by default) the header is ignored, so the
    throttle counts every attempt against the one real address."""
    codes = [login_status(server, "ana", "wrong", {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(1, 9)]
    assert codes[:4] == [401] * 4 and set(codes[4:]) == {429}, codes  # the (user, address) allowance is 5


def api_token(server: Server) -> str:
    form = "username=ops&password=" + PASSWORDS["ops"]
    status, _, body = raw_request(server, "POST /api/v1/auth/token HTTP/1.1\nHost: x\nContent-Type: application/"
                                          f"x-www-form-urlencoded\nContent-Length: {len(form)}\n", [form.encode()])
    assert status == 200, body
    return json.loads(body)["access_token"]


def session_request(server: Server, method: str, body: bytes, *headers: str) -> tuple[int, dict, bytes]:
    host = server.url.removeprefix("http://")
    extra = "".join(f"{h}\n" for h in headers)
    return raw_request(server, f"{method} /_sfduck/session HTTP/1.1\nHost: {host}\nContent-Length: {len(body)}\n"
                               f"{extra}", [body])


def test_the_session_cookie_comes_from_the_server_httponly(server: Server) -> None:
    """Issue 18 item 9: HttpOnly and SameSite=Strict; not Secure over http, whatever a client's
    X-Forwarded-Proto says (no proxy is trusted by default)."""
    token = api_token(server)
    body = json.dumps({"token": token}).encode()
    status, headers, _ = session_request(server, "POST", body, "Content-Type: application/json",
                                         "X-Forwarded-Proto: https")
    assert status == 204
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"sfduck_session={token};")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower()

    status, headers, _ = session_request(server, "DELETE", b"")
    assert status == 204 and headers["set-cookie"].startswith('sfduck_session="";')
    assert "httponly" in headers["set-cookie"].lower() and "max-age=0" in headers["set-cookie"].lower()


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b'{"token": "forged"}', ["Content-Type: application/json"], 401),
    (b"token=x", ["Content-Type: application/x-www-form-urlencoded"], 415),  # what a cross-site form sends
    (None, ["Content-Type: application/json", "Origin: https://evil.example"], 403),
])
def test_the_session_route_sets_only_valid_sessions_from_this_site(server: Server, body: bytes | None,
                                                                   headers: list[str], status: int) -> None:
    body = body if body is not None else json.dumps({"token": api_token(server)}).encode()
    answer, answer_headers, _ = session_request(server, "POST", body, *headers)
    assert answer == status and "set-cookie" not in answer_headers


def websocket_close_code(server: Server, message: bytes) -> int | None:
    """Send one binary message on the dashboard's websocket; the code the server closed with."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = server.url.replace("http://", "ws://") + "/_stcore/stream"
    with connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=30) as ws:
        try:
            ws.send(message)
            ws.recv(timeout=30)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    return None


def test_a_websocket_message_over_the_cap_is_refused_before_it_is_read(server: Server) -> None:
    """The dashboard's websocket is open before any login: a message there is capped like a body. Before,
    uvicorn read up to 200 MB (Streamlit's outgoing limit) per message before Streamlit's check."""
    assert websocket_close_code(server, b"\x00" * 1000) == 1002  # read and parsed: not a Streamlit message
    assert websocket_close_code(server, b"\x00" * (CAP + 1)) == 1009  # refused from the frame's header
