"""A DuckLake as the data target: Parquet files under a data path, a catalog in SQLite (many
processes on one machine) or PostgreSQL (many machines).

Its extensions are loaded offline from their pip packages; the lake is attached once per process
(_attached_lake) and each operation gets a cursor. Readers attach it and never wait for a writer;
sfduck's writers take turns (a flock beside a SQLite catalog, an advisory lock of a PostgreSQL
one). Every commit is a snapshot: sfduck labels the one that completes a sync with its sync_id,
reads tables as earlier snapshots left them, and expires old ones (retention).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import fcntl
import functools
import importlib.util
import json
import os
import re
import sqlite3
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from sfduck_core.config import Target
from sfduck_core.errors import ConfigError, SfduckError, StoreBusyError
from sfduck_core.files import make_private, private_dir
from sfduck_core.sqlident import qualified, quote_literal
from sfduck_core.storage.base import Capabilities, Snapshot, Storage, configure

LAKE_ALIAS = "sfduck_lake"
META_INLINING_ROWS = 10  # DuckLake's default: inserts of fewer rows live in the catalog, not in files
COMMIT_AUTHOR = "sfduck"  # the author of the lake snapshots that complete a sync
# DuckDB extensions come from pip packages built for exactly this duckdb version and are loaded
# from their files, offline: nothing is ever downloaded at run time.
EXTENSION_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "sqlite_scanner": "duckdb_extension_sqlite_scanner",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}
_CATALOG_EXTENSIONS = {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}
def extension_file(name: str) -> Path:
    """The .duckdb_extension file of `name` inside its pip package, for this duckdb version."""
    package = EXTENSION_PACKAGES[name]
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).glob(f"extensions/v{duckdb.__version__}/**/{name}.duckdb_extension"))
        if found:
            return found[0]
    raise ConfigError(
        f"The DuckDB extension {name!r} for duckdb {duckdb.__version__} is not installed; install the "
        f"package {package.replace('_', '-')}=={duckdb.__version__} (it is in requirements.txt)."
    )


def lake_setup_sql(target: Target, read_only: bool = False) -> list[str]:
    """The statements that open a lake on a fresh in-memory connection: load the extensions from
    their package files (never downloading), attach the lake and make it the default database, so
    that every statement written for a DuckDB file runs unchanged and unqualified."""
    needed = [_CATALOG_EXTENSIONS[target.catalog or ""], "ducklake"]
    if target.data_path and "://" in target.data_path:
        needed.insert(0, "httpfs")  # s3://, gs://, https:// data paths
    secret = _s3_secret_sql() if (target.data_path or "").startswith("s3://") else []
    options = [f"DATA_PATH {quote_literal(target.data_path or '', 'lake data path')}"]
    if read_only:
        options.append("READ_ONLY")
    return [
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        *(f"LOAD {quote_literal(str(extension_file(name)), 'extension path')}" for name in needed),
        *secret,
        f"ATTACH {quote_literal(target.attach_uri, 'lake connection string')} AS {LAKE_ALIAS} "
        f"({', '.join(options)})",
        f"USE {LAKE_ALIAS}",
    ]


_WAL_CATALOGS: set[str] = set()
_LAKE_WRITERS: dict[str, threading.Lock] = {}
_writers_lock = threading.Lock()
IN_PROCESS_WRITER_WAIT_S = 6 * 3600.0  # the default SFDUCK_SYNC_TIMEOUT


def _sqlite_wal(catalog: Path) -> None:
    """Put a SQLite catalog in WAL mode (once; it stays so in the file): in its default rollback
    mode a writer's commit locks readers out (measured: an independent reader waited 2.1 s for a
    sync's commit), in WAL mode readers keep reading the last committed snapshot meanwhile."""
    key = str(catalog)
    if key in _WAL_CATALOGS:
        return
    created = not catalog.exists()
    with contextlib.closing(sqlite3.connect(catalog, timeout=30.0)) as db:
        db.execute("PRAGMA journal_mode = WAL")
    if created:
        make_private(catalog)
    _WAL_CATALOGS.add(key)


# SQLite's lock bytes (os_unix.c): taking a SHARED lock on a database file read-locks its PENDING
# byte (2**30) for a moment, then holds a read lock on the 510 bytes from 2**30 + 2; EXCLUSIVE
# write-locks PENDING, then those bytes. Every connection using the WAL index (the -shm file)
# holds a read lock on its byte 128, the "dead man switch" (DMS).
_SQLITE_LOCKS = (("", ((0x40000000, 1), (0x40000000 + 2, 510))), ("-shm", ((128, 1),)))
_CATALOG_PINS: dict[str, list[int]] = {}


def _pin_sqlite_catalog(catalog: Path) -> None:
    """Hold, for as long as this process keeps the lake attached, the read locks an idle SQLite
    connection to the catalog would hold, so that sfduck's own connections never lock readers out.

    sqlite_scanner opens a SQLite connection per DuckDB transaction and closes it at the end, so
    this process often has none open. Then (1) the connection that closes last tries to take an
    EXCLUSIVE lock on the catalog, to checkpoint the WAL and delete it (holding the PENDING byte
    even when it cannot get the rest), and (2) the next one to open finds no
    holder of the WAL index's DMS lock, empties the index and rebuilds it from the WAL under its
    write and recovery locks. A reader opening its connection meanwhile gets SQLITE_BUSY, and that
    build's busy handler (no usleep) sleeps a whole second: reads of 1.03-1.2 s during syncs,
    strace: EAGAIN on those locks, then sleep(1). While another lock owner holds these read locks,
    SQLite skips both (the WAL is still checkpointed as it grows, by automatic checkpoints, which
    take no lock a reader waits on).

    The locks are open file description locks (Linux): this process's own POSIX locks conflict
    with them, and closing another descriptor of the file does not release them. Without
    F_OFD_SETLK nothing is pinned."""
    key = str(catalog)
    ofd_setlk = getattr(fcntl, "F_OFD_SETLK", None)
    if ofd_setlk is None or key in _CATALOG_PINS:
        return
    fds: list[int] = []
    try:
        for suffix, ranges in _SQLITE_LOCKS:
            fd = os.open(f"{catalog}{suffix}", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fds.append(fd)
            for start, length in ranges:
                # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for an OFD lock), native layout
                fcntl.fcntl(fd, ofd_setlk, struct.pack("@hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, start, length, 0))
    except OSError:  # a connection holding the write lock right now (rare): no pin in this process
        for fd in fds:
            os.close(fd)
        return
    _CATALOG_PINS[key] = fds


def _unpin_sqlite_catalog(catalog: str) -> None:
    for fd in _CATALOG_PINS.pop(catalog, []):
        os.close(fd)


# The advisory lock that gives sfduck's writers to one PostgreSQL-catalog lake their turns, on any
# machine: (a constant of sfduck's own, the lake's data path) in PostgreSQL's two-key form.
_PG_LOCK_CLASS = 0x5FD0C
_PG_LOCK_KEY = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"


@contextlib.contextmanager
def _postgres_writer_turn(target: Target, deadline: float, busy: StoreBusyError) -> Iterator[None]:
    """Hold a session-level advisory lock of the catalog database while writing: every sfduck
    process on every machine then takes turns on the lake's sfduck_meta (see _lake_writer). The
    lock belongs to this connection, so it ends with it, even when the process dies."""
    import psycopg  # only a PostgreSQL-catalog lake needs it

    try:
        pg = psycopg.connect(target.catalog_location, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreBusyError(f"Could not open the {target.describe()}: {target.redact(str(exc))}") from None
    with contextlib.closing(pg):
        _take_turn(lambda: pg.execute(_PG_LOCK_KEY, [_PG_LOCK_CLASS, target.data_path or ""]).fetchone()[0],
                   deadline, busy)
        yield


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _take_turn(try_take: Callable[[], bool], deadline: float, busy: StoreBusyError) -> None:
    """Try to take a writer's turn until `deadline`, backing off from 20 ms to 0.5 s, then `busy`."""
    delay = 0.02
    while not try_take():
        if time.monotonic() >= deadline:
            raise busy
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# Lakes this process keeps attached, most recently used last: a few, for a test run opens many.
_ATTACHED_LAKES: OrderedDict[tuple[str, str], duckdb.DuckDBPyConnection] = OrderedDict()
_ATTACHED_LAKES_KEPT = 4
_attached_lock = threading.Lock()


def _lake_key(target: Target) -> tuple[str, str]:
    return target.attach_uri, target.data_path or ""


def _attached_lake(target: Target) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with the lake's extensions loaded and the lake attached, made once per
    process, and a new connection (cursor) to it. Keeping it costs other processes nothing: a
    SQLite catalog is in WAL mode, where an attached reader blocks no writer, and a PostgreSQL
    catalog takes many connections."""
    key = _lake_key(target)
    with _attached_lock:
        base = _ATTACHED_LAKES.get(key)
        if base is not None:
            _ATTACHED_LAKES.move_to_end(key)
            return base, base.cursor()
        if target.catalog == "sqlite":
            private_dir(Path(target.catalog_location).parent)
        if target.data_path and "://" not in target.data_path:
            private_dir(target.data_path)
        if target.catalog == "sqlite":
            _sqlite_wal(Path(target.catalog_location))
            _pin_sqlite_catalog(Path(target.catalog_location))
        base = duckdb.connect()
        try:
            for sql in lake_setup_sql(target):
                base.execute(sql)
        except duckdb.Error as exc:
            base.close()
            raise StoreBusyError(f"Could not open the {target.describe()}: {target.redact(str(exc))}") from None
        except BaseException:
            base.close()
            raise
        if target.catalog == "sqlite":
            make_private(target.catalog_location)
        _ATTACHED_LAKES[key] = base
        while len(_ATTACHED_LAKES) > _ATTACHED_LAKES_KEPT:
            # dropped, not closed: closing would close the cursors still in use; the instance goes
            # with the last of them
            (uri, _), _ = _ATTACHED_LAKES.popitem(last=False)
            if uri.startswith("ducklake:sqlite:") and all(k[0] != uri for k in _ATTACHED_LAKES):
                _unpin_sqlite_catalog(str(Path(uri.removeprefix("ducklake:sqlite:"))))
        return base, base.cursor()


def _forget_attached_lake(target: Target, base: duckdb.DuckDBPyConnection) -> None:
    with _attached_lock:
        key = _lake_key(target)
        if _ATTACHED_LAKES.get(key) is base:
            del _ATTACHED_LAKES[key]


# The standard AWS variables -> the options of DuckDB's S3 secret (httpfs reads no environment).
_S3_SECRET_OPTIONS = (("AWS_ACCESS_KEY_ID", "KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "SECRET"),
                      ("AWS_SESSION_TOKEN", "SESSION_TOKEN"), ("AWS_REGION", "REGION"),
                      ("AWS_DEFAULT_REGION", "REGION"), ("AWS_ENDPOINT_URL", "ENDPOINT"))


def _s3_secret_sql() -> list[str]:
    """A temporary (in-memory) S3 secret from the standard AWS environment variables, for an
    s3:// data path; none when no key is set (public buckets). Never logged: it only ever exists
    inside the statement handed to DuckDB."""
    options: dict[str, str] = {}
    for variable, option in _S3_SECRET_OPTIONS:
        value = os.environ.get(variable)
        if value and option not in options:
            if option == "ENDPOINT":  # DuckDB wants host[:port]; the scheme says whether to use TLS
                options["USE_SSL"] = "false" if value.startswith("http://") else "true"
                options["URL_STYLE"] = "path"
                value = value.split("://", 1)[-1].rstrip("/")
            options[option] = value
    if "KEY_ID" not in options:
        return []
    rendered = ", ".join(f"{name} {quote_literal(value, 'AWS setting')}" if name not in ("USE_SSL",)
                         else f"{name} {value}" for name, value in options.items())
    return [f"CREATE OR REPLACE TEMPORARY SECRET sfduck_s3 (TYPE s3, PROVIDER config, {rendered})"]


_FIXED_ARRAY = re.compile(r"\[\d+\]$")

# What a lake's Parquet files cannot hold as DuckDB does, and what holds the same values there
# (measured on duckdb 1.5.5 with ducklake): DuckDB's Parquet writer turns HUGEINT into DOUBLE
# (170141183460469231731687303715884105727 came back as 1.7014118346046923e+38, then failed to
# read), while DECIMAL(38,0) keeps every NUMBER(38,0) exactly; it has no nanosecond TIME at all
# ("Unsupported type TIME_NS in Parquet writer", an abort of the process), so TIME(7-9) keeps
# microseconds in a lake - the one value a lake stores less exactly than a DuckDB file.
_LAKE_TYPES = {"HUGEINT": "DECIMAL(38,0)", "TIME_NS": "TIME"}


def lake_column_type(duck_type: str) -> str:
    """The column type as a lake holds it: see _LAKE_TYPES, and DuckLake has no fixed-size arrays
    (VECTOR(FLOAT, n) maps to FLOAT[n]): they are lists, FLOAT[]; DuckDB casts one into the other."""
    if _FIXED_ARRAY.search(duck_type):
        return _FIXED_ARRAY.sub("[]", duck_type)
    return _LAKE_TYPES.get(duck_type.upper(), duck_type)




def _close_attached_lakes() -> None:
    """See the atexit note in duckdb_file: an instance left open at exit aborts the process."""
    with _attached_lock:
        lakes = list(_ATTACHED_LAKES.values())
        _ATTACHED_LAKES.clear()
    for base in lakes:
        with contextlib.suppress(duckdb.Error):
            base.close()


atexit.register(_close_attached_lakes)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class DuckLake(Storage):
    """A DuckLake: readers never wait; every commit is a snapshot that can be read and expired."""

    capabilities = Capabilities(snapshots=True, time_travel=True, retention=True,
                                readers_never_wait=True, exact_types=False)
    label = "lake"
    place = "the lake"
    setting = "SFDUCK_TARGET"

    @property
    def path(self) -> Path | None:
        if self.target.data_path and "://" not in self.target.data_path:
            return Path(self.target.data_path) / "sfduck.lake"  # where the lake's data files grow
        return None

    @property
    def key(self) -> str:
        return self.target.attach_uri

    def local_places(self) -> list[tuple[str, str, Path]]:
        places = []
        if self.target.catalog == "sqlite":
            places.append(("lake catalog", self.target.catalog_location, Path(self.target.catalog_location).parent))
        if self.target.data_path and "://" not in self.target.data_path:
            places.append(("lake data", self.target.data_path, Path(self.target.data_path)))
        return places

    def exists(self) -> bool:
        """A PostgreSQL catalog is a database that exists whether or not a lake is in it yet."""
        return self.target.catalog != "sqlite" or Path(self.target.catalog_location).is_file()

    def sandbox_request(self) -> tuple[Path, dict[str, Any]]:
        """The child attaches the lake READ_ONLY; it may read only the lake's data folder."""
        if self.target.catalog == "sqlite" and not Path(self.target.catalog_location).is_file():
            raise SfduckError("No lake yet: run a sync first.")
        settings = {"lake_setup": lake_setup_sql(self.target, read_only=True), "lake_data_path": self.target.data_path}
        return (self.target.local_dir or Path(tempfile.gettempdir())) / "lake", settings

    def unreachable(self) -> list[str]:
        if self.target.catalog != "postgres":
            return []
        import psycopg  # only a PostgreSQL-catalog lake needs it

        try:
            psycopg.connect(self.target.catalog_location, connect_timeout=5).close()
        except psycopg.Error as exc:
            return [f"the lake's PostgreSQL catalog cannot be reached: {self.target.redact(str(exc)).strip()}"]
        return []

    # --- connections -----------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the instance this process keeps the lake attached in (see
        _attached_lake). sfduck's writers take turns like on a file (see _writer_turn);
        `read_only` operations (status, history, the cancel flag, previews) never wait for them."""
        with contextlib.ExitStack() as stack:
            if not read_only:
                stack.enter_context(self._writer_turn())
            con = self._open()
            stack.callback(con.close)
            configure(con, self.memory_limit)
            yield con

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """One sfduck writer at a time per lake (threads of this process, then other processes,
        waiting up to SFDUCK_LOCK_TIMEOUT: through a lock file beside a SQLite catalog on this
        machine, through an advisory lock of a PostgreSQL catalog on any machine).

        DuckLake settles concurrent commits optimistically, but sfduck's commits all update
        sfduck_meta, and two at once on a SQLite catalog fail ("database is locked", measured with
        4 concurrent syncs), so writers serialise as they do on a DuckDB file; readers never do."""
        key = self.target.attach_uri
        with _writers_lock:
            in_process = _LAKE_WRITERS.setdefault(key, threading.Lock())
        busy = StoreBusyError(f"The {self.target.describe()} is being written by another sfduck sync; waited "
                              f"{self.lock_timeout_s:.0f} s. Try again when it has finished.")
        # Threads of this process queue (a file lets them write at once): each holder is a live
        # operation of ours, bounded by its own time limit; other processes wait a bounded time.
        if not in_process.acquire(timeout=max(self.lock_timeout_s, IN_PROCESS_WRITER_WAIT_S)):
            raise busy
        deadline = time.monotonic() + self.lock_timeout_s
        fd = None
        try:
            if self.target.catalog == "postgres":
                with _postgres_writer_turn(self.target, deadline, busy):
                    yield
                return
            if self.target.catalog == "sqlite":
                lock_file = Path(self.target.catalog_location + ".sfduck-writer")
                private_dir(lock_file.parent)
                fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
                _take_turn(functools.partial(_try_flock, fd), deadline, busy)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock
            in_process.release()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A connection to the lake, from the instance this process keeps it attached in (see
        _attached_lake): a cursor costs ~2 ms where loading the extensions and attaching cost
        ~0.3 s (measured), and it sees every commit of every process, as a fresh one would."""
        for attempt in (1, 2):
            base, con = _attached_lake(self.target)
            try:
                con.execute(f"USE {LAKE_ALIAS}")
                return con
            except duckdb.Error:  # an instance invalidated by a fatal error: attach afresh, once
                con.close()
                _forget_attached_lake(self.target, base)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # --- dialect ---------------------------------------------------------------------------

    def column_type(self, duck_type: str) -> str:
        return lake_column_type(duck_type)

    def tune_metadata(self, con: duckdb.DuckDBPyConnection, schema: str) -> None:
        if self.target.catalog == "postgres":
            # DuckLake inlines inserts of a few rows into catalog tables of the catalog's own
            # types, and PostgreSQL has none for some of ours (TIME_NS: the commit of a 5-row
            # table failed, measured): synced tables always go to Parquet files. sfduck_meta
            # (plain types, many tiny writes) stays inlined.
            con.execute(f"CALL {LAKE_ALIAS}.set_option('data_inlining_row_limit', 0)")
            con.execute(f"CALL {LAKE_ALIAS}.set_option('data_inlining_row_limit', ?, schema => ?)",
                        [META_INLINING_ROWS, schema])

    # --- versions --------------------------------------------------------------------------

    def snapshots(self, con: duckdb.DuckDBPyConnection) -> list[Snapshot]:
        rows = con.execute(f"SELECT snapshot_id, snapshot_time FROM {LAKE_ALIAS}.snapshots() ORDER BY 1").fetchall()
        return [Snapshot(int(sid), _aware(at)) for sid, at in rows]

    def label_commit(self, con: duckdb.DuckDBPyConnection, sync_id: str, message: str) -> None:
        """The commit's snapshot is labelled with the sync_id, which is how a job finds its
        snapshot later (`sync_snapshots`) without a second write."""
        con.execute(f"CALL {LAKE_ALIAS}.set_commit_message(?, ?, extra_info => ?)",
                    [COMMIT_AUTHOR, message, json.dumps({"sync_id": sync_id})])

    def sync_snapshots(self, con: duckdb.DuckDBPyConnection,
                       sync_ids: Sequence[str] | None = None) -> dict[str, int]:
        sql = f"SELECT snapshot_id, commit_extra_info FROM {LAKE_ALIAS}.snapshots() WHERE author = ?"
        params: list[Any] = [COMMIT_AUTHOR]
        if sync_ids is not None:  # the labels as label_commit writes them
            sql += " AND list_contains(?, commit_extra_info)"
            params.append([json.dumps({"sync_id": s}) for s in sync_ids])
        rows = con.execute(sql, params).fetchall()
        found: dict[str, int] = {}
        for snapshot_id, extra in rows:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                found[json.loads(extra)["sync_id"]] = int(snapshot_id)
        return found

    def table_at(self, schema: str, table: str, snapshot_id: int | None) -> tuple[str, list[Any]]:
        if snapshot_id is None:
            return qualified(schema, table), []
        return f"{qualified(schema, table)} AT (VERSION => ?)", [int(snapshot_id)]

    def expire_snapshots(self, con: duckdb.DuckDBPyConnection, snapshot_ids: Sequence[int],
                         orphan_grace: dt.timedelta = dt.timedelta(hours=6)) -> dict[str, int]:
        """DuckLake's own maintenance: expire these snapshots (their versions can no longer be
        read), delete the files only they used, and delete files no snapshot knows (left by syncs
        killed mid-load) once older than `orphan_grace` - never younger, for a running sync's files
        are unknown to every snapshot until it commits (SFDUCK_SYNC_TIMEOUT bounds a sync)."""
        if orphan_grace < dt.timedelta(hours=1):
            raise SfduckError("Keep orphaned files for an hour at least: a running sync's files are orphans "
                              "until it commits.")
        expired = con.execute("CALL ducklake_expire_snapshots(?, versions => ?)",
                              [LAKE_ALIAS, [int(i) for i in snapshot_ids]]).fetchall() if snapshot_ids else []
        old_files = con.execute("CALL ducklake_cleanup_old_files(?, cleanup_all => true)", [LAKE_ALIAS]).fetchall()
        orphans = con.execute("CALL ducklake_delete_orphaned_files(?, older_than => ?)",
                              [LAKE_ALIAS, dt.datetime.now(dt.UTC) - orphan_grace]).fetchall()
        return {"snapshots_expired": len(expired), "files_deleted": len(old_files), "orphans_deleted": len(orphans)}
