"""Running an emulator: on a loopback port in a background thread, or as a command."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

import uvicorn

from sfduck_emulator.app import EmulatorApp
from sfduck_emulator.demo_data import seed
from sfduck_emulator.fakesnow_fixes import install_fixes
from sfduck_emulator.settings import DEFAULT_ACCOUNT, DEMO_DATABASE, DEMO_SCHEMA, EmulatorSettings

_SEED_LOCK = threading.Lock()


def _free_port(host: str) -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    """True once the HTTP server answers (fakesnow replies 401 JSON to a token-less /session)."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=1)
        c.request("POST", "/session", body=b"{}")
        status = c.getresponse().status
        c.close()
        return status in (200, 401)
    except OSError:
        return False


def _answered_unhandled(record: logging.LogRecord) -> bool:
    """fakesnow logs a traceback for what it cannot run; the app answers those with an error of
    its own (a statement the emulator does not support), so the traceback is only noise."""
    message = record.getMessage()  # (and sqlglot warns of every SHOW it passes through as is)
    return "Unhandled exception" not in message and "Falling back to parsing as a 'Command'" not in message


class Emulator:
    """A loopback Snowflake for the real connector; all instances share fakesnow's global data."""

    HOST = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int | None = None,
        user: str = "sfduck",
        password: str | None = None,
        seed: bool = True,
        data_rows: int = 1_000_000,
        database: str = DEMO_DATABASE,
        schema: str = DEMO_SCHEMA,
    ) -> None:
        self._port = port
        self._user = user
        self._password = password if password is not None else secrets.token_urlsafe(24)
        self._seed = seed
        self._data_rows = data_rows
        self._database = database.upper()
        self._schema = schema.upper()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._settings: EmulatorSettings | None = None
        self.seed_seconds: float | None = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> EmulatorSettings:
        if self._settings is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._settings

    def start(self) -> EmulatorSettings:
        with self._lock:
            if self._settings is not None:
                return self._settings
            install_fixes()
            if self._seed:
                started = time.perf_counter()
                with _SEED_LOCK:
                    seed(self._data_rows, self._database, self._schema)
                self.seed_seconds = time.perf_counter() - started
            port = self._port or _free_port(self.HOST)
            app = EmulatorApp(self._user, self._password).app
            fakesnow_log = logging.getLogger("fakesnow.server")
            fakesnow_log.setLevel(logging.WARNING)
            for name in ("fakesnow.server", "sqlglot"):
                if _answered_unhandled not in logging.getLogger(name).filters:
                    logging.getLogger(name).addFilter(_answered_unhandled)
            server = uvicorn.Server(
                uvicorn.Config(app, host=self.HOST, port=port, log_level="warning", lifespan="off")
            )
            thread = threading.Thread(target=server.run, name=f"sfduck-emulator-{port}", daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not (server.started and _answers(self.HOST, port)):
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    raise RuntimeError(f"the emulator could not start on {self.HOST}:{port}")
                time.sleep(0.02)
            self._server, self._thread = server, thread
            self._settings = EmulatorSettings(
                host=self.HOST,
                port=port,
                protocol="http",
                account=DEFAULT_ACCOUNT,
                user=self._user,
                password=self._password,
                database=self._database,
                schema=self._schema,
            )
            return self._settings

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = self._thread = None
            self._settings = None

    def __enter__(self) -> EmulatorSettings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_EMBEDDED: Emulator | None = None
_EMBEDDED_LOCK = threading.Lock()


def embedded_emulator() -> EmulatorSettings:
    """The process-wide demo backend, started (and seeded with 1M rows) on first use."""
    global _EMBEDDED
    with _EMBEDDED_LOCK:
        if _EMBEDDED is None:
            # SFDUCK_DEMO_ROWS lets tests and quick demos seed a smaller "data" table
            emulator = Emulator(data_rows=int(os.environ.get("SFDUCK_DEMO_ROWS") or 1_000_000))
            emulator.start()
            _EMBEDDED = emulator
        return _EMBEDDED.settings


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: event.set())
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Serve an emulator until Ctrl-C/SIGTERM, printing how to reach it (password included:
    it is a throwaway local one)."""
    parser = argparse.ArgumentParser(prog="sfduck emulator", description="Run a local Snowflake emulator.")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--user", default="sfduck")
    parser.add_argument("--password", default=None, help="default: a random one, printed below")
    parser.add_argument("--rows", type=int, default=1_000_000, help='rows in the "data" table')
    parser.add_argument("--no-seed", action="store_true", help="start with no demo tables")
    args = parser.parse_args(argv)

    emulator = Emulator(
        port=args.port, user=args.user, password=args.password, seed=not args.no_seed, data_rows=args.rows
    )
    settings = emulator.start()
    for key, value in settings.as_env().items():
        print(f"export {key}={shlex.quote(value)}")
    print(json.dumps(dataclasses.asdict(settings)))
    sys.stdout.flush()
    stop = threading.Event()
    try:
        with _signals_set(stop):
            while not stop.wait(0.5):
                pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
