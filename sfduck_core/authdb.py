"""Login state that must outlive a process: revoked sessions and failed-login counters.

It lives in a small SQLite file beside the DuckDB file, not in DuckDB itself, because logging in
must keep working while a sync (or an analyst's notebook) holds the DuckDB file: SQLite lets several
processes read and write one file safely, so the dashboard, an API server and a restart all see the
same revocations and throttle counters. Every row carries its own expiry and is pruned on write, so
the file stays small whatever an attacker sends.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sfduck_core.files import create_private_file

AUTH_DB_FILE = "auth.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS revoked_sessions (session_id TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS login_failures (throttle_key TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
    " last_failure REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS known_logins (login_key TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
)


class AuthDatabase:
    """Revocations and failure counters in one owner-only SQLite file (WAL, so readers never block)."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        create_private_file(self.path)
        setup = sqlite3.connect(self.path, timeout=10.0)
        try:
            setup.execute("PRAGMA journal_mode = WAL")
        finally:
            setup.close()
        with self._connect() as con:
            for statement in _SCHEMA:
                con.execute(statement)

    @contextlib.contextmanager
    def _connect(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    # --- sessions -----------------------------------------------------------------------------

    def revoke_session(self, session_id: str, expires_at: float) -> None:
        """Refuse this session from now on (until it would have expired anyway)."""
        with self._connect() as con:
            con.execute("DELETE FROM revoked_sessions WHERE expires_at < ?", [self.clock()])
            con.execute("INSERT OR REPLACE INTO revoked_sessions VALUES (?, ?)", [session_id, expires_at])

    def is_revoked(self, session_id: str) -> bool:
        with self._connect(write=False) as con:
            row = con.execute("SELECT 1 FROM revoked_sessions WHERE session_id = ?", [session_id]).fetchone()
        return row is not None

    # --- failed logins ------------------------------------------------------------------------

    def failures(self, throttle_key: str, window_s: float) -> tuple[int, float]:
        """(failures, time of the last one) for `throttle_key`, counting only the last `window_s`."""
        with self._connect(write=False) as con:
            row = con.execute("SELECT failures, last_failure FROM login_failures WHERE throttle_key = ?",
                              [throttle_key]).fetchone()
        if row is None or row[1] < self.clock() - window_s:
            return 0, 0.0
        return int(row[0]), float(row[1])

    def record_failure(self, throttle_key: str, window_s: float) -> int:
        """Count one more failure (a stale counter starts again at 1); returns the new count."""
        now = self.clock()
        with self._connect() as con:
            con.execute("DELETE FROM login_failures WHERE last_failure < ?", [now - window_s])
            con.execute(
                "INSERT INTO login_failures VALUES (?, 1, ?) ON CONFLICT (throttle_key) DO UPDATE "
                "SET failures = failures + 1, last_failure = excluded.last_failure",
                [throttle_key, now],
            )
            row = con.execute("SELECT failures FROM login_failures WHERE throttle_key = ?",
                              [throttle_key]).fetchone()
        return int(row[0])

    def clear_failures(self, throttle_key: str) -> None:
        with self._connect() as con:
            con.execute("DELETE FROM login_failures WHERE throttle_key = ?", [throttle_key])

    # --- addresses a user has logged in from -------------------------------------------------------

    def remember_login(self, login_key: str, keep_s: float) -> None:
        """Note a successful login (a user at an address) for `keep_s` seconds."""
        now = self.clock()
        with self._connect() as con:
            con.execute("DELETE FROM known_logins WHERE expires_at < ?", [now])
            con.execute("INSERT OR REPLACE INTO known_logins VALUES (?, ?)", [login_key, now + keep_s])

    def is_known_login(self, login_key: str) -> bool:
        with self._connect(write=False) as con:
            row = con.execute("SELECT 1 FROM known_logins WHERE login_key = ? AND expires_at >= ?",
                              [login_key, self.clock()]).fetchone()
        return row is not None
