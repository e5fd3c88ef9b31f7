"""A throwaway PostgreSQL cluster for the lake tests: initdb in a temp folder, served on a free
loopback port by the `postgres` user (initdb refuses root), stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def _bin(name: str) -> str | None:
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    return shutil.which(name)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str | None]:
    """Yield a libpq connection string (no password: trust on loopback), or None when PostgreSQL
    is not installed here (apt-get install postgresql) or cannot be run."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        yield None
        return
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            yield None
            return
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="sfduck-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, port = base / "data", _free_port()
    try:
        made = subprocess.run([*as_user, initdb, "-A", "trust", "-U", "postgres", "-D", str(data)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            yield None
            return
        started = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                                  f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            yield None
            return
        try:
            yield f"dbname=postgres host=127.0.0.1 port={port} user=postgres"
        finally:
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
