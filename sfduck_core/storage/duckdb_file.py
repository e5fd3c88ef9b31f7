"""A DuckDB file as the data target.

DuckDB lets one process at a time open a file, and the dashboard and the command line must share
it, so nothing here keeps the file open while idle (beyond a server's short warm keep, see
_WarmDatabases): every operation opens, works and closes, and a process that finds the file busy
retries for a bounded time before failing with a clear message that names the holder.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psutil

from sfduck_core.errors import Holder, SfduckError, StoreBusyError
from sfduck_core.files import make_private, private_dir
from sfduck_core.storage.base import Capabilities, Storage, configure, wait_policy

_LOCK_ERROR = re.compile(r"lock|already open|being used", re.IGNORECASE)
_PID_IN_LOCK = re.compile(r"PID (\d+)")
# DuckDB 1.5.5 shares one database instance among a process's connections to a file, but opening
# one while another thread opens or closes the last one fails ("Unique file handle conflict",
# measured: 50 of 800 opens from 4 threads); opens and closes of files are therefore serialised.
_FILE_HANDLES = threading.Lock()
# A hold this short (a server's warm keep, another sfduck's commit) is waited out without telling a
# WaitPolicy: a job shows `waiting` only for a holder that keeps the file longer.
_QUIET_S = 1.0


def lock_holder(message: str) -> Holder | None:
    """The process DuckDB's lock error names ("... PID n ..."), with its program's name when this
    process may see it."""
    found = _PID_IN_LOCK.search(message)
    if not found:
        return None
    pid = int(found.group(1))
    try:
        program: str | None = psutil.Process(pid).name() or None
    except (psutil.Error, OSError):
        program = None
    return Holder(pid, program)


class _WarmDatabases:
    """Keeps a DuckDB file open in this process for a moment after each use.

    Opening the file costs milliseconds (catalog read, and a checkpoint when the last connection
    closes); a connection to a database this process already has open costs microseconds. A server
    answering many requests keeps the file open between them, and lets it go after `keep_s`
    seconds of quiet so that other processes (the SQL box's child, a CLI) can open it.
    """

    def __init__(self) -> None:
        self._anchors: dict[str, list[Any]] = {}  # path -> [connection, last use, keep_s]
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def touch(self, path: str, keep_s: float) -> None:
        """Called with a connection to `path` open, so the anchor costs no file open."""
        with self._lock:
            entry = self._anchors.get(path)
            if entry is None:
                try:
                    with _FILE_HANDLES:
                        entry = self._anchors[path] = [duckdb.connect(path), 0.0, keep_s]
                except duckdb.Error:
                    return
            entry[1] = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._expire, name="sfduck-warm-db", daemon=True)
                self._thread.start()

    def release(self, path: str | None = None) -> None:
        """Let the file go now (all files when `path` is None)."""
        with self._lock:
            for key in [k for k in self._anchors if path is None or k == path]:
                with _FILE_HANDLES:
                    self._anchors.pop(key)[0].close()

    def _expire(self) -> None:
        while True:
            time.sleep(0.2)
            with self._lock:
                for key, (anchor, last, keep_s) in list(self._anchors.items()):
                    if time.monotonic() - last > keep_s:
                        del self._anchors[key]
                        with _FILE_HANDLES:
                            anchor.close()


WARM = _WarmDatabases()

# A DuckDB instance still open when the interpreter tears itself down is destroyed while its
# threads' owners are already gone, which aborts a process that ended cleanly ("terminate called
# without an active exception", exit status 134): close them while the runtime is whole.
atexit.register(WARM.release)


class DuckDBFile(Storage):
    """One DuckDB file: one process at a time; a sfduck writer's turn is holding the file open."""

    capabilities = Capabilities(snapshots=False, time_travel=False, retention=False,
                                readers_never_wait=False, exact_types=True)
    label = "file"
    place = "DuckDB"
    setting = "SFDUCK_DUCKDB_PATH"

    @property
    def path(self) -> Path:
        assert self.target.path is not None
        return self.target.path

    @property
    def key(self) -> str:
        return str(self.path.resolve())

    def local_places(self) -> list[tuple[str, str, Path]]:
        return [("DuckDB file", str(self.path), self.path.parent)]

    def exists(self) -> bool:
        return self.path.is_file()

    def sandbox_request(self) -> tuple[Path, dict[str, Any]]:
        path = self.path.expanduser().resolve()  # the child runs elsewhere: never hand it a relative path
        if not path.is_file():
            raise SfduckError(f"No database at {path}: run a sync first.")
        return path, {}

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file, waiting a bounded time if another process holds it. `read_only` changes
        nothing here: a file opened read-only by this process would refuse every other writer
        of it for as long as this process keeps it (see _WarmDatabases)."""
        con = self._open()
        try:
            configure(con, self.memory_limit)
            yield con
        finally:
            with _FILE_HANDLES:
                con.close()

    def release(self) -> None:
        WARM.release(str(self.path))

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Open the file; while another process holds it, retry with backoff (up to 1 s apart) for
        `lock_timeout_s`, or as the thread's WaitPolicy says (a sync: SFDUCK_DATA_WAIT, telling
        whom it waits for, cancellable)."""
        private_dir(self.path.parent)
        created = not self.path.exists()
        policy = wait_policy()
        wait_s = policy.wait_s if policy is not None else self.lock_timeout_s
        started = time.monotonic()
        deadline = started + wait_s
        delay = 0.05
        announced: Holder | None | bool = False  # False: not waiting yet
        while True:
            try:
                with _FILE_HANDLES:
                    con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if not _LOCK_ERROR.search(str(exc)):
                    raise
                holder = lock_holder(str(exc))
                if policy is not None and announced != holder and time.monotonic() - started >= _QUIET_S:
                    announced = holder
                    policy.on_wait(holder)
                stopped = policy is not None and policy.should_stop()
                if stopped or time.monotonic() >= deadline:
                    who = str(holder) if holder else "another process"
                    waited = ("" if wait_s <= 0 else "; stopped waiting for it" if stopped
                              else f"; waited {wait_s:g} s")
                    raise StoreBusyError(f"The DuckDB file {self.path} is open in {who}{waited}; try again when "
                                         "it lets go.", holder=holder) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        if policy is not None and announced is not False:
            try:
                policy.on_resume()
            except BaseException:
                with _FILE_HANDLES:
                    con.close()
                raise
        if created:
            make_private(self.path)
        if self.keep_warm_s > 0:
            WARM.touch(str(self.path), self.keep_warm_s)
        return con
