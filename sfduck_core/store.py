"""The local DuckDB file: synced tables plus sfduck's own metadata.

Synced tables live at "<SCHEMA>"."<TABLE>", named exactly as in Snowflake. The spec's metadata
tables live in the schema `sfduck_meta`, created and migrated by versioned code. DuckDB lets one
process at a time open a file, and the dashboard and the command line must share it, so nothing
here keeps the file open while idle: every operation opens, works and closes, and a process that
finds the file busy retries for a bounded time before failing with a clear message.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import fcntl
import functools
import importlib.util
import json
import os
import re
import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psutil

from sfduck_core.config import Target
from sfduck_core.errors import (
    ConfigError,
    JobNotFoundError,
    NotRegisteredError,
    SfduckError,
    StoreBusyError,
    SyncAlreadyRunningError,
    TableNotFoundError,
)
from sfduck_core.files import make_private, private_dir
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.sqlident import qualified, quote_ident, quote_literal
from sfduck_core.suggest import did_you_mean

META = "sfduck_meta"
STAGING_PREFIX = "__sfduck_staging_"

MIGRATIONS: list[list[str]] = [
    [
        f"CREATE SCHEMA IF NOT EXISTS {META}",
        f"""CREATE TABLE {META}.allowed_tables (
            table_id VARCHAR NOT NULL,
            schema_name VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            incremental_key VARCHAR,
            primary_key VARCHAR[],
            detect_deletes BOOLEAN NOT NULL DEFAULT FALSE,
            include_columns VARCHAR[],
            exclude_columns VARCHAR[],
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL)""",
        f"""CREATE TABLE {META}.sync_jobs (
            sync_id VARCHAR NOT NULL,
            table_id VARCHAR NOT NULL,
            schema_name VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            strategy VARCHAR NOT NULL,
            transport VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            started_at TIMESTAMPTZ,
            completed_at TIMESTAMPTZ,
            error_message VARCHAR,
            stats JSON,
            filter VARCHAR,
            pid INTEGER,
            host VARCHAR,
            process_started DOUBLE)""",
        f"""CREATE TABLE {META}.table_sync_status (
            table_id VARCHAR NOT NULL,
            schema_name VARCHAR NOT NULL,
            table_name VARCHAR NOT NULL,
            last_sync_id VARCHAR,
            last_status VARCHAR,
            last_sync_at TIMESTAMPTZ,
            last_success_sync_id VARCHAR,
            last_success_at TIMESTAMPTZ,
            row_count BIGINT,
            size_bytes BIGINT,
            watermark JSON,
            source_row_count BIGINT,
            source_last_modified TIMESTAMPTZ,
            columns JSON,
            filter VARCHAR)""",
    ],
    # which Snowflake the file's tables come from ("demo" or the account), claimed on first use
    [f"CREATE TABLE {META}.data_source (label VARCHAR NOT NULL, claimed_at TIMESTAMPTZ NOT NULL)"],
    # set by `cancel`, from any process; the sync checks it while it runs
    [f"ALTER TABLE {META}.sync_jobs ADD COLUMN cancel_requested BOOLEAN DEFAULT false"],
    # who started a job: the front end (cli, dashboard, api, schedule) and the user behind it
    [f"ALTER TABLE {META}.sync_jobs ADD COLUMN trigger VARCHAR",
     f"ALTER TABLE {META}.sync_jobs ADD COLUMN started_by VARCHAR"],
    # registrations, unregistrations and schedule changes: who and when
    [f"""CREATE TABLE {META}.audit_log (
            changed_at TIMESTAMPTZ NOT NULL,
            actor VARCHAR,
            action VARCHAR NOT NULL,
            table_id VARCHAR,
            schema_name VARCHAR,
            table_name VARCHAR,
            details JSON)"""],
    # one schedule per registered table (see sfduck_core.schedules)
    [f"""CREATE TABLE {META}.schedules (
            table_id VARCHAR NOT NULL,
            cron VARCHAR,
            timezone VARCHAR NOT NULL DEFAULT 'UTC',
            interval_s BIGINT,
            strategy VARCHAR NOT NULL,
            enabled BOOLEAN NOT NULL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            paused_reason VARCHAR,
            next_run_at TIMESTAMPTZ,
            last_run_at TIMESTAMPTZ,
            last_sync_id VARCHAR,
            last_outcome VARCHAR,
            updated_by VARCHAR,
            updated_at TIMESTAMPTZ NOT NULL)"""],
    # (once indexes on sync_jobs; a fresh file no longer creates them, see the next migration)
    [],
    # No ART index on the job rows, which every sync updates: after a kill -9 the replayed WAL left
    # an index that no longer found a `running` job, so recovery, cancel and every update of it
    # matched nothing and the table stayed blocked for ever (issue 18). A lookup scans instead;
    # time-ordered sync ids (new_sync_id) let it skip all but one row group.
    [f"DROP INDEX IF EXISTS {META}.sync_jobs_by_id",
     f"DROP INDEX IF EXISTS {META}.sync_jobs_by_table"],
    # (after the indexes are gone) a sync that found nothing changed ends `skipped`, a status of its own; it used to end
    # `completed` with `skipped: true` in its stats, so such jobs (and table statuses) are renamed
    [f"UPDATE {META}.sync_jobs SET status = 'skipped' "
     "WHERE status = 'completed' AND coalesce(stats->>'skipped', '') = 'true'",
     f"UPDATE {META}.table_sync_status SET last_status = 'skipped' WHERE last_status = 'completed' "
     f"AND last_sync_id IN (SELECT sync_id FROM {META}.sync_jobs WHERE status = 'skipped')"],
]

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
# DuckLake cannot ADD COLUMN with a default it does not see as a literal, and `false` is not one
# to it (measured on 1.5.5); the string 'false' is, and DuckDB casts it the same way.
_BOOLEAN_DEFAULT = re.compile(r"(\bADD\s+COLUMN\b.*\bBOOLEAN\b.*\bDEFAULT\s+)(true|false)\b",
                              re.IGNORECASE | re.DOTALL)
_LOCK_ERROR = re.compile(r"lock|already open|being used", re.IGNORECASE)
_PID_IN_LOCK = re.compile(r"PID (\d+)")
# DuckDB 1.5.5 shares one database instance among a process's connections to a file, but opening
# one while another thread opens or closes the last one fails ("Unique file handle conflict",
# measured: 50 of 800 opens from 4 threads); opens and closes of files are therefore serialised.
_FILE_HANDLES = threading.Lock()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
# Syncs running in this process: a `running` job with our pid that is not in here is dead.
ACTIVE_SYNCS: set[str] = set()
# Failures this process could not write down (a full disk): recorded when the job is reaped.
UNRECORDED_FAILURES: dict[str, str] = {}
_job_lock = threading.Lock()




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


def in_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether this connection's default database is a lake (see lake_setup_sql)."""
    return con.execute("SELECT current_database()").fetchone()[0] == LAKE_ALIAS


# What a lake's Parquet files cannot hold as DuckDB does, and what holds the same values there
# (measured on duckdb 1.5.5 with ducklake): DuckDB's Parquet writer turns HUGEINT into DOUBLE
# (170141183460469231731687303715884105727 came back as 1.7014118346046923e+38, then failed to
# read), while DECIMAL(38,0) keeps every NUMBER(38,0) exactly; it has no nanosecond TIME at all
# ("Unsupported type TIME_NS in Parquet writer", an abort of the process), so TIME(7-9) keeps
# microseconds in a lake - the one value a lake stores less exactly than a DuckDB file.
_LAKE_TYPES = {"HUGEINT": "DECIMAL(38,0)", "TIME_NS": "TIME"}


def storage_type(con: duckdb.DuckDBPyConnection, duck_type: str) -> str:
    """The column type as the storage holds it. In a lake: see _LAKE_TYPES, and DuckLake has no
    fixed-size arrays (VECTOR(FLOAT, n) maps to FLOAT[n]): they are lists, FLOAT[]; DuckDB casts
    one into the other."""
    if not in_lake(con):
        return duck_type
    if _FIXED_ARRAY.search(duck_type):
        return _FIXED_ARRAY.sub("[]", duck_type)
    return _LAKE_TYPES.get(duck_type.upper(), duck_type)


def lake_statement(sql: str) -> str | None:
    """A statement written for a DuckDB file, in the form DuckLake accepts (see _BOOLEAN_DEFAULT);
    None for an index, which DuckLake does not have (its files carry min/max statistics instead)."""
    if re.match(r"\s*(CREATE|DROP)\s+INDEX\b", sql, re.IGNORECASE):
        return None
    return _BOOLEAN_DEFAULT.sub(lambda m: f"{m.group(1)}'{m.group(2).lower()}'", sql)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_sync_id() -> str:
    """A UUID version 7 (RFC 9562): the creation time in milliseconds, then random bits. Jobs are
    appended in creation order, so each row group of sync_jobs holds a narrow range of ids and
    DuckDB's min/max statistics skip all the others when a job is looked up by id (there is no
    index, see MIGRATIONS)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 + 62 used
    value = ((millis & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 68) << 64
             | 0b10 << 62 | rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


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


def _close_databases_at_exit() -> None:
    """A DuckDB instance still open when the interpreter tears itself down is destroyed while its
    threads' owners are already gone, which aborts a process that ended cleanly ("terminate called
    without an active exception", exit status 134): close them while the runtime is whole."""
    WARM.release()
    with _attached_lock:
        lakes = list(_ATTACHED_LAKES.values())
        _ATTACHED_LAKES.clear()
    for base in lakes:
        with contextlib.suppress(duckdb.Error):
            base.close()


atexit.register(_close_databases_at_exit)


@dataclass(frozen=True)
class JobQuery:
    """Which jobs to list or summarize; every field narrows, none is formatted into SQL."""

    table_id: str | None = None
    schema_name: str | None = None
    table_name: str | None = None
    tables: tuple[str, ...] = ()  # "SCHEMA.TABLE" labels, any of them
    status: str | None = None
    trigger: str | None = None
    started_by: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("table_id", self.table_id), ("schema_name", self.schema_name),
                              ("table_name", self.table_name), ("status", self.status),
                              ("trigger", self.trigger), ("started_by", self.started_by)):
            if value is not None:
                clauses.append(f"{quote_ident(column)} = ?")
                params.append(value)
        if self.tables:
            clauses.append("list_contains(?, schema_name || '.' || table_name)")
            params.append(list(self.tables))
        if self.since is not None:
            clauses.append("created_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("created_at < ?")
            params.append(self.until)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True)
class Registration:
    table_id: str
    schema_name: str
    table_name: str
    status: str
    incremental_key: str | None = None
    primary_key: tuple[str, ...] = ()
    detect_deletes: bool = False
    include_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    # set when this registration changed the column selection: the next sync reloads the table
    full_sync_required: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "table_id": self.table_id,
            "table_name": self.table_name,
            "schema_name": self.schema_name,
            "status": self.status,
            "incremental_key": self.incremental_key,
            "primary_key": list(self.primary_key),
            "detect_deletes": self.detect_deletes,
            "include_columns": list(self.include_columns),
            "exclude_columns": list(self.exclude_columns),
            "full_sync_required": self.full_sync_required,
        }


@dataclass(frozen=True)
class LakeSnapshot:
    snapshot_id: int
    snapshot_time: dt.datetime
    table_id: str | None  # the table whose sync committed it; None: bookkeeping (job rows, registrations)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def process_start_mark(pid: int) -> float | None:
    """When `pid` started, in a unit no clock step can move: clock ticks since boot on Linux
    (field 22 of /proc/PID/stat), the wall-clock start time elsewhere. None: no such process.

    A wall-clock start time (psutil's create_time) moves when the clock is stepped, which made a
    live sync look like a dead one whose pid had been reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else _wall_clock_start(pid)
    except OSError:
        return _wall_clock_start(pid)
    return float(stat[stat.rindex(b")") + 2:].split()[19])  # after "pid (comm) ", field 3 is index 0


def _wall_clock_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class Store:
    """sfduck's metadata and synced tables in one DuckDB file.

    One rule for connections: a public method opens its own (one short operation, so other
    processes wait as little as possible); a method that takes part in a caller's transaction
    takes the connection as its first argument and never commits.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0, memory_limit: str = "256MB",
                 keep_warm_s: float = 0.0, target: Target | None = None):
        """`keep_warm_s`: how long the file stays open in this process after a use (a server's
        choice, see `_WarmDatabases`); 0 closes it with the last connection. `target` a lake:
        `path` is then only the local anchor for disk-space checks."""
        self.target = target if target is not None and target.is_lake else Target("duckdb", path=Path(path))
        self.path = Path(path)
        if self.target.is_lake and self.target.data_path and "://" not in self.target.data_path:
            self.path = Path(self.target.data_path) / "sfduck.lake"  # where the lake's data files grow
        self.lock_timeout_s = lock_timeout_s
        self.memory_limit = memory_limit
        self.keep_warm_s = keep_warm_s
        # beside the DuckDB file (for a lake: the state folder that SFDUCK_DUCKDB_PATH names)
        self.notes_dir = Path(path).parent / "job-notes"

    @property
    def is_lake(self) -> bool:
        return self.target.is_lake

    # --- connections -----------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the storage for one operation: the file (waiting a bounded time if another process
        holds it) or the lake (a connection to the instance this process keeps it attached in,
        see _attached_lake). In a lake, sfduck's
        writers take turns like on a file (see _lake_writer); `read_only` operations (status,
        history, the cancel flag, previews) never wait for them."""
        if not self.is_lake:
            with self._connected(self._open_file()) as con:
                yield con
            return
        migrated = self.target.attach_uri in _migrated
        with contextlib.ExitStack() as stack:
            if not (read_only and migrated):
                stack.enter_context(self._lake_writer())
            con = stack.enter_context(self._connected(self._open_lake()))
            yield con

    @contextlib.contextmanager
    def _lake_writer(self) -> Iterator[None]:
        """One sfduck writer at a time per lake (threads of this process, then other processes,
        waiting up to SFDUCK_LOCK_TIMEOUT: through a lock file beside a SQLite catalog on this
        machine, through an advisory lock of a PostgreSQL catalog on any machine).

        DuckLake settles concurrent commits optimistically, but sfduck's commits all update
        sfduck_meta, and two at once on a SQLite catalog fail ("database is locked", measured with
        4 concurrent syncs), so writers serialise as they do on a DuckDB file; readers never do."""
        key = self.target.attach_uri
        with _migrate_lock:
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

    @contextlib.contextmanager
    def _connected(self, con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            con.execute(f"SET memory_limit = '{_memory_limit(self.memory_limit)}'")
            # progress is tracked (for query_progress) but never printed on the terminal
            con.execute("SET enable_progress_bar = true")
            con.execute("SET enable_progress_bar_print = false")
            self._migrate(con)
            yield con
        finally:
            if self.is_lake:
                con.close()
            else:
                with _FILE_HANDLES:
                    con.close()

    def _open_lake(self) -> duckdb.DuckDBPyConnection:
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

    def _open_file(self) -> duckdb.DuckDBPyConnection:
        private_dir(self.path.parent)
        created = not self.path.exists()
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                with _FILE_HANDLES:
                    con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if not _LOCK_ERROR.search(str(exc)):
                    raise
                if time.monotonic() >= deadline:
                    holder = _PID_IN_LOCK.search(str(exc))
                    who = f" (process {holder.group(1)})" if holder else ""
                    raise StoreBusyError(
                        f"The DuckDB file {self.path} is in use by another process{who}; waited "
                        f"{self.lock_timeout_s:.0f} s. Try again when it has finished."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        if created:
            make_private(self.path)
        if self.keep_warm_s > 0:
            WARM.touch(str(self.path), self.keep_warm_s)
        return con

    def ping(self, wait_s: float = 2.0) -> None:
        """Open the storage and read it, waiting at most `wait_s` for another process (health checks)."""
        quick = Store(self.path, min(wait_s, self.lock_timeout_s), self.memory_limit, target=self.target)
        with quick.connect(read_only=True) as con:
            con.execute(f"SELECT count(*) FROM {META}.schema_version").fetchone()

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        key = self.target.attach_uri if self.is_lake else str(self.path.resolve())
        if key in _migrated:
            return
        with _migrate_lock:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {META}")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {META}.schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            current = con.execute(f"SELECT coalesce(max(version), 0) FROM {META}.schema_version").fetchone()[0]
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                con.execute("BEGIN")
                try:
                    for sql in statements:
                        statement = lake_statement(sql) if self.is_lake else sql
                        if statement:
                            con.execute(statement)
                    con.execute(f"INSERT INTO {META}.schema_version VALUES (?, ?)", [version, now()])
                    con.execute("COMMIT")
                except Exception:
                    con.execute("ROLLBACK")
                    raise
            if self.target.catalog == "postgres":
                # DuckLake inlines inserts of a few rows into catalog tables of the catalog's own
                # types, and PostgreSQL has none for some of ours (TIME_NS: the commit of a 5-row
                # table failed, measured): synced tables always go to Parquet files. sfduck_meta
                # (plain types, many tiny writes) stays inlined.
                con.execute(f"CALL {LAKE_ALIAS}.set_option('data_inlining_row_limit', 0)")
                con.execute(f"CALL {LAKE_ALIAS}.set_option('data_inlining_row_limit', ?, schema => ?)",
                            [META_INLINING_ROWS, META])
            _migrated.add(key)

    # --- ownership -------------------------------------------------------------------------

    def claim_source(self, label: str) -> None:
        """Refuse to mix Snowflakes in one file: demo data beside an account's, or two accounts.

        A file that holds no registration yet (a fresh one, or one from before this check) is
        claimed by whoever uses it, so trying the demo first never locks out a real account."""
        with self.connect() as con:
            row = con.execute(f"SELECT label FROM {META}.data_source LIMIT 1").fetchone()
            if row is not None and row[0] == label:
                return
            registered = con.execute(f"SELECT count(*) FROM {META}.allowed_tables").fetchone()[0]
            if row is None or not registered:
                con.execute("BEGIN")
                con.execute(f"DELETE FROM {META}.data_source")
                con.execute(f"INSERT INTO {META}.data_source VALUES (?, ?)", [label, now()])
                con.execute("COMMIT")
                return
        if row[0] != label:
            def name(x: str) -> str:
                return "the demo emulator" if x == "demo" else f"the Snowflake account {x!r}"

            raise ConfigError(
                f"The {self.target.describe()} holds tables from {name(row[0])}, but sfduck is configured for "
                f"{name(label)}. Point {'SFDUCK_TARGET' if self.is_lake else 'SFDUCK_DUCKDB_PATH'} at another "
                f"{'lake' if self.is_lake else 'file'} (or fix the configuration that was not found); nothing was changed."
            )

    # --- registrations ---------------------------------------------------------------------

    def get_registration(self, schema: str, table: str) -> Registration | None:
        with self.connect(read_only=True) as con:
            return self._registration(con, schema, table)

    @staticmethod
    def _registration(con: duckdb.DuckDBPyConnection, schema: str, table: str | None = None, *,
                      table_id: str | None = None) -> Registration | None:
        """One registration, by name or (with `table_id`) by id."""
        where, params = (("table_id = ?", [table_id]) if table_id is not None
                         else ("schema_name = ? AND table_name = ?", [schema, table]))
        row = con.execute(
            f"SELECT table_id, schema_name, table_name, status, incremental_key, primary_key, "
            f"detect_deletes, include_columns, exclude_columns FROM {META}.allowed_tables WHERE {where}",
            params,
        ).fetchone()
        if not row:
            return None
        return Registration(row[0], row[1], row[2], row[3], row[4], tuple(row[5] or ()), bool(row[6]),
                            tuple(row[7] or ()), tuple(row[8] or ()))

    def registration_by_id(self, table_id: str) -> Registration:
        with self.connect() as con:
            reg = self._registration(con, "", table_id=table_id)
        if reg is None:
            raise TableNotFoundError(f"No registered table with id {table_id!r}.")
        return reg

    def require_active(self, schema: str, table: str) -> Registration:
        reg = self.get_registration(schema, table)
        if reg is None or reg.status != "active":
            known = [f"{r.schema_name}.{r.table_name}" for r in self.list_registrations()]
            raise NotRegisteredError(schema, table, f"{schema}.{table} is not registered for syncing."
                                     + did_you_mean(f"{schema}.{table}", known))
        return reg

    def table_history(self, schema: str, table: str) -> list[dict[str, Any]]:
        """A table's jobs, newest first; a table never registered nor synced is an error (a
        mistyped name is not an empty history)."""
        jobs = self.history(schema, table)
        if not jobs and self.get_registration(schema, table) is None:
            known = [f"{r.schema_name}.{r.table_name}" for r in self.list_registrations(include_inactive=True)]
            raise TableNotFoundError(f"{schema}.{table} was never registered, so it has no sync history."
                                     + did_you_mean(f"{schema}.{table}", known))
        return jobs

    def upsert_registration(self, schema: str, table: str, *, incremental_key: str | None,
                            primary_key: Sequence[str], detect_deletes: bool,
                            include_columns: Sequence[str], exclude_columns: Sequence[str]) -> Registration:
        """Register (or re-activate) a table; registering again only updates its settings."""
        with self.connect() as con:
            con.execute("BEGIN")
            existing = self._registration(con, schema, table)
            values = [incremental_key, list(primary_key), detect_deletes, list(include_columns),
                      list(exclude_columns), now()]
            if existing:
                con.execute(
                    f"UPDATE {META}.allowed_tables SET status = 'active', incremental_key = ?, primary_key = ?, "
                    "detect_deletes = ?, include_columns = ?, exclude_columns = ?, updated_at = ? "
                    "WHERE table_id = ?",
                    [*values, existing.table_id],
                )
                table_id = existing.table_id
                reselected = (tuple(include_columns), tuple(exclude_columns)) != (
                    existing.include_columns, existing.exclude_columns)
                if reselected:
                    # an incremental merge would keep a newly excluded column's old values and leave a
                    # newly included one NULL in old rows: forget the watermark and the source
                    # fingerprint, so the next sync (of either strategy) rebuilds the table
                    con.execute(
                        f"UPDATE {META}.table_sync_status SET watermark = NULL, source_last_modified = NULL, "
                        "source_row_count = NULL WHERE table_id = ?", [table_id])
            else:
                reselected = False
                table_id = str(uuid.uuid4())
                con.execute(
                    f"INSERT INTO {META}.allowed_tables (table_id, schema_name, table_name, status, "
                    "incremental_key, primary_key, detect_deletes, include_columns, exclude_columns, "
                    "updated_at, created_at) VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)",
                    [table_id, schema, table, *values, values[-1]],
                )
            con.execute("COMMIT")
            reg = self._registration(con, schema, table)
        assert reg is not None
        synced = self.sync_status(schema, table) is not None
        return dataclasses.replace(reg, full_sync_required=reselected and synced)

    def deactivate(self, schema: str, table: str) -> Registration:
        with self.connect() as con:
            reg = self._registration(con, schema, table)
            if reg is None:
                raise NotRegisteredError(schema, table, f"{schema}.{table} is not registered.")
            con.execute(
                f"UPDATE {META}.allowed_tables SET status = 'inactive', updated_at = ? WHERE table_id = ?",
                [now(), reg.table_id],
            )
            reg = self._registration(con, schema, table)
        assert reg is not None
        return reg

    def list_registrations(self, include_inactive: bool = False) -> list[Registration]:
        where = "" if include_inactive else "WHERE status = 'active'"
        with self.connect(read_only=True) as con:
            rows = con.execute(
                f"SELECT schema_name, table_name FROM {META}.allowed_tables {where} "
                "ORDER BY schema_name, table_name"
            ).fetchall()
            return [r for s, t in rows if (r := self._registration(con, s, t))]

    # --- jobs ------------------------------------------------------------------------------

    def start_job(self, reg: Registration, strategy: str, transport: str, filter_sql: str | None, *,
                  trigger: str = "cli", started_by: str | None = None, queued: bool = False) -> str:
        """Insert a `running` job (`pending` when `queued` for an executor slot) unless one is
        already pending or running for this table (checked atomically)."""
        sync_id = new_sync_id()
        with _job_lock, self.connect() as con:
            self._reap_dead_jobs(con)
            running = con.execute(
                f"SELECT sync_id, created_at FROM {META}.sync_jobs "
                "WHERE table_id = ? AND status IN ('pending', 'running')",
                [reg.table_id],
            ).fetchone()
            if running:
                raise SyncAlreadyRunningError(
                    f"A sync of {reg.schema_name}.{reg.table_name} is already running (sync_id {running[0]}, "
                    f"started {running[1]:%Y-%m-%d %H:%M:%S %Z}); wait for it to finish."
                )
            ts = now()
            con.execute(
                f"INSERT INTO {META}.sync_jobs (sync_id, table_id, schema_name, table_name, strategy, transport, "
                "status, created_at, stats, filter, pid, host, process_started, trigger, started_by) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, '{}', ?, ?, ?, ?, ?, ?)",
                [sync_id, reg.table_id, reg.schema_name, reg.table_name, strategy, transport, ts, filter_sql,
                 os.getpid(), socket.gethostname(), process_start_mark(os.getpid()), trigger, started_by],
            )
            ACTIVE_SYNCS.add(sync_id)
            if not queued:
                con.execute(f"UPDATE {META}.sync_jobs SET status = 'running', started_at = ? WHERE sync_id = ?",
                            [ts, sync_id])
            self._record_status(con, reg, sync_id, "pending" if queued else "running", ts)
        self._reserve_note(sync_id)
        return sync_id

    def mark_running(self, sync_id: str) -> None:
        """A queued job got its executor slot (a job already running is left as it is)."""
        ts = now()
        with self.connect() as con:
            con.execute(f"UPDATE {META}.sync_jobs SET status = 'running', started_at = ? "
                        "WHERE sync_id = ? AND status = 'pending'", [ts, sync_id])
            con.execute(f"UPDATE {META}.table_sync_status SET last_status = 'running' "
                        "WHERE last_sync_id = ? AND last_status = 'pending'", [sync_id])

    def audit(self, action: str, actor: str | None, reg: Registration | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Record who changed what (registrations, schedules); never read back by sfduck itself."""
        with self.connect() as con:
            con.execute(
                f"INSERT INTO {META}.audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                [now(), actor, action, reg.table_id if reg else None, reg.schema_name if reg else None,
                 reg.table_name if reg else None, json.dumps(details, default=_iso) if details else None],
            )

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.connect() as con:
            cur = con.execute(f"SELECT * FROM {META}.audit_log ORDER BY changed_at DESC LIMIT ?", [limit])
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [{k: _iso(v) for k, v in zip(names, row, strict=True)} for row in rows]

    def _record_status(self, con: duckdb.DuckDBPyConnection, reg: Registration, sync_id: str, status: str,
                       ts: dt.datetime, **fields: Any) -> None:
        exists = con.execute(
            f"SELECT 1 FROM {META}.table_sync_status WHERE table_id = ?", [reg.table_id]
        ).fetchone()
        if not exists:
            con.execute(
                f"INSERT INTO {META}.table_sync_status (table_id, schema_name, table_name) VALUES (?, ?, ?)",
                [reg.table_id, reg.schema_name, reg.table_name],
            )
        values = {"last_sync_id": sync_id, "last_status": status, "last_sync_at": ts, **fields}
        if status in SUCCESS_STATUSES:
            values.update(last_success_sync_id=sync_id, last_success_at=ts)
        assignments = ", ".join(f"{quote_ident(k)} = ?" for k in values)
        con.execute(
            f"UPDATE {META}.table_sync_status SET {assignments} WHERE table_id = ?",
            [*(json.dumps(v, default=_iso) if isinstance(v, dict | list) else v for v in values.values()),
             reg.table_id],
        )

    def complete_job(self, con: duckdb.DuckDBPyConnection, reg: Registration, sync_id: str,
                     stats: dict[str, Any], transport: str, *, status: str = "completed",
                     **status_fields: Any) -> None:
        """Mark success (`completed`, or `skipped` when nothing had changed) inside the caller's
        transaction, so data and metadata commit together. In a lake the commit's snapshot is
        labelled with the sync_id, which is how the job finds its snapshot later (`snapshot_id` in
        its stats) without a second write."""
        if status not in SUCCESS_STATUSES:
            raise ValueError(f"complete_job records a success, not {status!r}")
        ts = now()
        if self.is_lake:
            con.execute(f"CALL {LAKE_ALIAS}.set_commit_message(?, ?, extra_info => ?)",
                        [COMMIT_AUTHOR, f"sfduck sync of {reg.schema_name}.{reg.table_name}",
                         json.dumps({"sync_id": sync_id})])
        con.execute(
            f"UPDATE {META}.sync_jobs SET status = ?, completed_at = ?, stats = ?, transport = ? "
            "WHERE sync_id = ?",
            [status, ts, json.dumps(stats, default=_iso), transport, sync_id],
        )
        self._record_status(con, reg, sync_id, status, ts, **status_fields)

    def request_cancel(self, sync_id: str) -> dict[str, Any]:
        """Ask a running sync to stop; it ends `cancelled` at its next check (within seconds)."""
        self.reap_dead_jobs()
        with self.connect() as con:
            status = con.execute(f"SELECT status FROM {META}.sync_jobs WHERE sync_id = ?", [sync_id]).fetchone()
            if status is None:
                raise JobNotFoundError(f"No sync job with id {sync_id!r}.")
            if status[0] not in ("pending", "running"):
                raise SfduckError(f"Sync {sync_id} is not running (it is {status[0]}); nothing to cancel.")
            con.execute(f"UPDATE {META}.sync_jobs SET cancel_requested = true WHERE sync_id = ?", [sync_id])
        job = self.get_job(sync_id)
        assert job is not None
        return job

    def cancel_requested(self, sync_id: str) -> bool:
        with self.connect(read_only=True) as con:
            row = con.execute(f"SELECT cancel_requested FROM {META}.sync_jobs WHERE sync_id = ?", [sync_id]).fetchone()
        return bool(row and row[0])

    def fail_job(self, reg: Registration, sync_id: str, message: str, stats: dict[str, Any],
                 status: str = "failed") -> None:
        """Record the failure; if even that fails (the disk that made the sync fail is still full),
        keep the message in this process, so the job is reaped with its real cause later."""
        ts = now()
        try:
            with self.connect() as con:
                con.execute(
                    f"UPDATE {META}.sync_jobs SET status = ?, completed_at = ?, error_message = ?, stats = ? "
                    "WHERE sync_id = ?",
                    [status, ts, message, json.dumps(stats, default=_iso), sync_id],
                )
                self._record_status(con, reg, sync_id, status, ts)
        except (duckdb.Error, OSError, SfduckError):
            UNRECORDED_FAILURES[sync_id] = message
            self._write_note(sync_id, message)

    def finish(self, sync_id: str) -> None:
        ACTIVE_SYNCS.discard(sync_id)
        if sync_id not in UNRECORDED_FAILURES:
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    # A failure that could not be written to the store (its disk was full) must outlive the process:
    # each job reserves a small file when it starts, and its message is written into that space,
    # which needs no free block; whoever reaps the job reads it there (see _reap_dead_jobs).
    NOTE_BYTES = 4096

    def _note(self, sync_id: str) -> Path:
        return self.notes_dir / f"{sync_id}.failure"

    def _reserve_note(self, sync_id: str) -> None:
        with contextlib.suppress(OSError):  # best effort: without it, a lost failure says "stopped"
            private_dir(self.notes_dir)
            fd = os.open(self._note(sync_id), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.NOTE_BYTES)
            finally:
                os.close(fd)

    def _write_note(self, sync_id: str, message: str) -> None:
        data = message.encode()[: self.NOTE_BYTES - 4].decode(errors="ignore").encode()
        with contextlib.suppress(OSError):
            fd = os.open(self._note(sync_id), os.O_WRONLY)  # never created here: its space is reserved
            try:
                os.pwrite(fd, data.ljust(self.NOTE_BYTES, b"\0"), 0)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_note(self, sync_id: str) -> str | None:
        try:
            text = self._note(sync_id).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            return None
        return text or None

    def _reap_dead_jobs(self, con: duckdb.DuckDBPyConnection) -> None:
        """A job left `running` by a process that died is failed, so it no longer blocks its table."""
        rows = con.execute(
            f"SELECT sync_id, table_id, pid, host, process_started, trigger FROM {META}.sync_jobs "
            "WHERE status IN ('pending', 'running')"
        ).fetchall()
        me = socket.gethostname()
        for sync_id, table_id, pid, host, started, trigger in rows:
            if host != me or _job_alive(sync_id, pid, started):
                continue
            ts = now()
            message = (UNRECORDED_FAILURES.get(sync_id) or self._read_note(sync_id)
                       or _stopped_message(pid, trigger))
            con.execute(
                f"UPDATE {META}.sync_jobs SET status = 'failed', completed_at = ?, error_message = ? "
                "WHERE sync_id = ?",
                [ts, message, sync_id],
            )
            con.execute(
                f"UPDATE {META}.table_sync_status SET last_status = 'failed' "
                "WHERE table_id = ? AND last_sync_id = ?",
                [table_id, sync_id],
            )
            UNRECORDED_FAILURES.pop(sync_id, None)
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    def reap_dead_jobs(self) -> None:
        with _job_lock, self.connect() as con:
            self._reap_dead_jobs(con)

    def get_job(self, sync_id: str) -> dict[str, Any] | None:
        jobs = self._jobs("WHERE sync_id = ?", [sync_id])
        return jobs[0] if jobs else None

    def running_jobs(self) -> list[dict[str, Any]]:
        return self._jobs("WHERE status IN ('pending', 'running')", [])

    def history(self, schema: str | None = None, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Jobs, newest first, optionally for one table."""
        if schema is None:
            return self._jobs("", [], limit)
        return self._jobs("WHERE schema_name = ? AND table_name = ?", [schema, table], limit)

    def find_jobs(self, query: JobQuery, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of the jobs `query` selects, newest first, and how many it selects in all."""
        where, params = query.where()
        with self.connect(read_only=True) as con:
            total = int(con.execute(f"SELECT count(*) FROM {META}.sync_jobs {where}", params).fetchone()[0])
            return self._jobs(where, params, limit, offset, con), total

    def job_facets(self) -> dict[str, Any]:
        """The values the job filters can take (tables, statuses, triggers, users), for pickers."""
        with self.connect(read_only=True) as con:
            def distinct(expr: str) -> list[str]:
                rows = con.execute(f"SELECT DISTINCT {expr} FROM {META}.sync_jobs WHERE {expr} IS NOT NULL "
                                   "ORDER BY 1").fetchall()
                return [r[0] for r in rows]

            first = con.execute(f"SELECT min(created_at) FROM {META}.sync_jobs").fetchone()[0]
            return {"tables": distinct("schema_name || '.' || table_name"), "statuses": distinct("status"),
                    "triggers": distinct("trigger"), "users": distinct("started_by"), "first_created": first}

    def prune_jobs(self, older_than: dt.datetime) -> int:
        """Delete finished jobs created before `older_than` (retention); never a table's last
        success, which incremental syncs and skipping still read."""
        with self.connect() as con:
            return int(con.execute(
                f"DELETE FROM {META}.sync_jobs WHERE created_at < ? AND status NOT IN ('pending', 'running') "
                f"AND sync_id NOT IN (SELECT last_success_sync_id FROM {META}.table_sync_status "
                "WHERE last_success_sync_id IS NOT NULL) "
                f"AND sync_id NOT IN (SELECT last_sync_id FROM {META}.table_sync_status "
                "WHERE last_sync_id IS NOT NULL)",
                [older_than]).fetchone()[0])

    def _jobs(self, where: str, params: list[Any], limit: int = 1000, offset: int = 0,
              con: duckdb.DuckDBPyConnection | None = None) -> list[dict[str, Any]]:
        with contextlib.nullcontext(con) if con is not None else self.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT sync_id, table_id, schema_name, table_name, strategy, transport, status, created_at, "
                "started_at, completed_at, error_message, stats, filter, trigger, started_by "
                f"FROM {META}.sync_jobs {where} ORDER BY created_at DESC, sync_id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
            snapshots = self._job_snapshots(con) if self.is_lake and rows else {}
        jobs = []
        for row in rows:
            job = dict(zip(names, row, strict=True))
            job["stats"] = json.loads(job["stats"]) if job["stats"] else {}
            if job["sync_id"] in snapshots:
                job["stats"]["snapshot_id"] = snapshots[job["sync_id"]]
            for key in ("created_at", "started_at", "completed_at"):
                job[key] = _iso(job[key])
            jobs.append(job)
        return jobs

    @staticmethod
    def _job_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        """sync_id -> the lake snapshot that committed it (see complete_job)."""
        rows = con.execute(
            f"SELECT snapshot_id, commit_extra_info FROM {LAKE_ALIAS}.snapshots() WHERE author = ?", [COMMIT_AUTHOR]
        ).fetchall()
        found: dict[str, int] = {}
        for snapshot_id, extra in rows:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                found[json.loads(extra)["sync_id"]] = int(snapshot_id)
        return found

    def sync_status(self, schema: str, table: str) -> dict[str, Any] | None:
        with self.connect(read_only=True) as con:
            cur = con.execute(
                f"SELECT * FROM {META}.table_sync_status WHERE schema_name = ? AND table_name = ?", [schema, table]
            )
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
        if not row:
            return None
        status = dict(zip(names, row, strict=True))
        for key in ("watermark", "columns"):
            status[key] = json.loads(status[key]) if status[key] else None
        return {k: _iso(v) for k, v in status.items()}

    # --- lake retention --------------------------------------------------------------------

    def lake_snapshots(self) -> list[LakeSnapshot]:
        """Every snapshot of the lake, oldest first, with the table whose completed sync committed it
        (None: bookkeeping, a skipped sync's included)."""
        self.require_lake("Retention")
        with self.connect(read_only=True) as con:
            rows = con.execute(f"SELECT snapshot_id, snapshot_time FROM {LAKE_ALIAS}.snapshots() ORDER BY 1"
                               ).fetchall()
            by_sync = self._job_snapshots(con)
            # a skipped sync's commit holds only its job row: the table's version is the completed one before it
            tables = dict(con.execute(f"SELECT sync_id, table_id FROM {META}.sync_jobs WHERE list_contains(?, sync_id) "
                                      "AND status = 'completed'", [list(by_sync)]).fetchall()) if by_sync else {}
        table_of = {snapshot: tables.get(sync_id) for sync_id, snapshot in by_sync.items()}
        return [LakeSnapshot(int(sid), _aware(at), table_of.get(int(sid))) for sid, at in rows]

    def expire_lake_snapshots(self, snapshot_ids: Sequence[int],
                              orphan_grace: dt.timedelta = dt.timedelta(hours=6)) -> dict[str, int]:
        """DuckLake's own maintenance: expire these snapshots (their versions can no longer be
        read), delete the files only they used, and delete files no snapshot knows (left by syncs
        killed mid-load) once older than `orphan_grace` - never younger, for a running sync's files
        are unknown to every snapshot until it commits (SFDUCK_SYNC_TIMEOUT bounds a sync)."""
        self.require_lake("Retention")
        if orphan_grace < dt.timedelta(hours=1):
            raise SfduckError("Keep orphaned files for an hour at least: a running sync's files are orphans "
                              "until it commits.")
        with self.connect() as con:
            expired = con.execute("CALL ducklake_expire_snapshots(?, versions => ?)",
                                  [LAKE_ALIAS, [int(i) for i in snapshot_ids]]).fetchall() if snapshot_ids else []
            old_files = con.execute("CALL ducklake_cleanup_old_files(?, cleanup_all => true)", [LAKE_ALIAS]).fetchall()
            orphans = con.execute("CALL ducklake_delete_orphaned_files(?, older_than => ?)",
                                  [LAKE_ALIAS, now() - orphan_grace]).fetchall()
        return {"snapshots_expired": len(expired), "files_deleted": len(old_files), "orphans_deleted": len(orphans)}

    def require_lake(self, what: str) -> None:
        if not self.is_lake:
            raise SfduckError(f"{what} applies to a DuckLake target (SFDUCK_TARGET=ducklake:...); a DuckDB file "
                              "keeps only the current version of each table.")

    # --- synced tables ---------------------------------------------------------------------

    def synced_tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every table sfduck has loaded, for previews."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name <> ? AND NOT starts_with(table_name, ?) "
                "ORDER BY 1, 2",
                [META, STAGING_PREFIX],
            ).fetchall()
        return [(s, t) for s, t in rows]

    @staticmethod
    def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
        return bool(
            con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ?",
                [schema, table],
            ).fetchone()
        )

    @staticmethod
    def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [schema, table],
            ).fetchall()
        ]

    def ensure_schema(self, schema: str) -> None:
        """Create a local schema in a transaction of its own: two first syncs into one new schema,
        each creating it inside its long load transaction, would conflict at commit."""
        for attempt in range(5):
            try:
                with self.connect() as con:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
                return
            except duckdb.TransactionException:  # another sync created it at this very moment
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @staticmethod
    def create_table(con: duckdb.DuckDBPyConnection, schema: str, table: str,
                     columns: Sequence[tuple[str, str]]) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        cols = ", ".join(f"{quote_ident(name)} {storage_type(con, duck_type)}" for name, duck_type in columns)
        con.execute(f"CREATE TABLE {qualified(schema, table)} ({cols})")

    @staticmethod
    def replace_table(con: duckdb.DuckDBPyConnection, schema: str, table: str, staging: str) -> None:
        """Swap the staging table in for the live one (inside the caller's transaction)."""
        con.execute(f"DROP TABLE IF EXISTS {qualified(schema, table)}")
        con.execute(f"ALTER TABLE {qualified(schema, staging)} RENAME TO {quote_ident(table)}")

    @staticmethod
    def count_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
        return int(con.execute(f"SELECT count(*) FROM {qualified(schema, table)}").fetchone()[0])

    @staticmethod
    def staging_name(sync_id: str) -> str:
        """Unique per sync: the random end of its id (the start of a time-ordered id is its time,
        shared by syncs started in the same millisecond)."""
        return f"{STAGING_PREFIX}{sync_id.replace('-', '')[-16:]}"


def _memory_limit(value: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)?", value.strip(), re.IGNORECASE):
        raise ValueError(f"Invalid DuckDB memory limit {value!r}")
    return value.strip()


def _stopped_message(pid: int | None, trigger: str | None) -> str:
    """Why a job that nobody runs any more ended: the server or the command that ran it stopped."""
    who = "sfduck command" if trigger in (None, "cli") else "server"
    return (f"The {who} stopped during this sync (process {pid} ended before it finished); the table was "
            "left as it was before the sync, and it can be synced again.")


def _job_alive(sync_id: str, pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    mark = process_start_mark(pid)
    if mark is None:
        return False
    # a live process with another start mark reused the pid of the one that died
    same_process = started is None or abs(mark - started) < 1e-6
    if same_process and pid == os.getpid():
        return sync_id in ACTIVE_SYNCS
    return same_process
