"""A SQLite-catalog lake's readers never wait for sfduck (issue 21, item 6): while sfduck keeps the
lake attached, it holds the read locks an idle SQLite connection holds, so SQLite connections that
close never try to checkpoint-and-delete the WAL under an EXCLUSIVE lock (whose first step, the
PENDING byte, already shuts readers out), and ones that open never empty
and rebuild the WAL index: the two moments a reader's connection waited a whole second (see
storage.ducklake._pin_sqlite_catalog). Checked from another process, as an analyst's would see the catalog."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sfduck_core.config import parse_target
from sfduck_core.store import Store

# Run in its own process: POSIX locks of one process never conflict with each other.
PROBE = textwrap.dedent("""
    import fcntl, json, os, sqlite3, struct, sys

    catalog = sys.argv[1]

    def held(path, start, length):
        # F_GETLK: would a write lock on these bytes conflict with a lock another owner holds?
        if not os.path.exists(path):
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("@hhqqi4x", fcntl.F_WRLCK, 0, start, length, 0))
        finally:
            os.close(fd)
        return struct.unpack("@hhqqi4x", got)[0] != fcntl.F_UNLCK

    pending = held(catalog, 2**30, 1)  # a would-be EXCLUSIVE lock's first step
    database_shared, wal_index_in_use = held(catalog, 2**30 + 2, 510), held(catalog + "-shm", 128, 1)
    con = sqlite3.connect(catalog)  # an analyst's connection, the only one of its process
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    con.close()  # as the last connection it would checkpoint and delete the WAL, if it could lock
    print(json.dumps({"pending": pending, "database_shared": database_shared, "wal_index_in_use": wal_index_in_use,
                      "wal_kept": os.path.exists(catalog + "-wal")}))
""")


@pytest.mark.skipif(not hasattr(fcntl, "F_OFD_SETLK"), reason="open file description locks are Linux-only")
def test_an_attached_sqlite_catalog_keeps_the_locks_that_spare_readers_a_wait(tmp_path: Path) -> None:
    catalog = tmp_path / "lake" / "c.sqlite"
    target = parse_target(f"ducklake:sqlite:{catalog}", str(tmp_path / "lake" / "d"), Path)
    store = Store(tmp_path / "unused.duckdb", target=target)
    with store.connect() as con:  # a commit: the WAL holds frames
        con.execute('CREATE TABLE "S_T" AS SELECT 1 AS "ID"')
    # between sfduck's transactions: no SQLite connection of sfduck's is open now
    out = subprocess.run([sys.executable, "-c", PROBE, str(catalog)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"pending": true, "database_shared": true, "wal_index_in_use": true, "wal_kept": true}'
    # and sfduck goes on reading and writing its lake as before
    with store.connect() as con:
        con.execute('INSERT INTO "S_T" VALUES (2)')
        assert con.execute('SELECT count(*) FROM "S_T"').fetchone()[0] == 2
