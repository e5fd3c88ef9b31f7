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
import datetime as dt
import fcntl
import functools
import importlib.util
import json
import os
import re
import socket
import sqlite3
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
from sqlalchemy.exc import SQLAlchemyError

from sfduck_core.config import Target
from sfduck_core.errors import (
    ConfigError,
    SfduckError,
    StoreBusyError,
    TableNotFoundError,
)
from sfduck_core.files import make_private, private_dir
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.metadata import JobQuery, MetadataDatabase, Registration, default_metadata_url
from sfduck_core.metadata.records import now, to_json
from sfduck_core.sqlident import qualified, quote_ident, quote_literal
from sfduck_core.suggest import did_you_mean

META = "sfduck_meta"
STAGING_PREFIX = "__sfduck_staging_"

# LEGACY: the metadata schema of releases that kept it in the data target (sfduck_meta), version by
# version. No longer applied to a data target (the metadata lives in sfduck_core.metadata); kept for
# reading an old file's sfduck_meta when it is upgraded (sfduck_core.metadata.legacy).
LEGACY_MIGRATIONS: list[list[str]] = [
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
            _ATTACHED_LAKES.popitem(last=False)
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
class LakeSnapshot:
    snapshot_id: int
    snapshot_time: dt.datetime
    table_id: str | None  # the table whose sync committed it; None: bookkeeping (job rows, registrations)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


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


# --- commit records: which syncs' data committed, kept in the data target itself ------------------
# Written in the same transaction as a sync's data (file and lake alike), so after a crash between
# the data's COMMIT and the metadata's write, the job is settled from here (Store._reap_dead_jobs).
# Self-contained DDL and queries, for the storage package to take over.

COMMITS_TABLE = f"{META}.sync_commits"
COMMITS_DDL = (f"CREATE SCHEMA IF NOT EXISTS {META}",
               f"CREATE TABLE IF NOT EXISTS {COMMITS_TABLE} (sync_id VARCHAR NOT NULL, schema_name VARCHAR NOT NULL, "
               "table_name VARCHAR NOT NULL, committed_at TIMESTAMPTZ NOT NULL, record JSON NOT NULL)")


def record_commit(con: duckdb.DuckDBPyConnection, sync_id: str, schema: str, table: str,
                  record: dict[str, Any]) -> None:
    """Note in the caller's open data transaction that `sync_id` commits with it; `record` is what
    completing its job takes (status, stats, transport, status fields), as JSON."""
    con.execute(f"INSERT INTO {COMMITS_TABLE} VALUES (?, ?, ?, ?, ?)",
                [sync_id, schema, table, now(), to_json(record)])


def committed_syncs(con: duckdb.DuckDBPyConnection, sync_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """sync_id -> its commit record, for those of `sync_ids` whose data committed."""
    rows = con.execute(f"SELECT sync_id, record FROM {COMMITS_TABLE} WHERE list_contains(?, sync_id)",
                       [list(sync_ids)]).fetchall()
    return {sync_id: json.loads(record) for sync_id, record in rows}


class Store:
    """The synced tables in one DuckDB file or DuckLake, and (through `metadata`) sfduck's own
    records of them: registrations, jobs, statuses, kept in the metadata database.

    One rule for connections: a public method opens its own (one short operation, so other
    processes wait as little as possible); a method that takes part in a caller's transaction
    takes the connection as its first argument and never commits.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0, memory_limit: str = "256MB",
                 keep_warm_s: float = 0.0, target: Target | None = None, metadata_url: str | None = None):
        """`keep_warm_s`: how long the file stays open in this process after a use (a server's
        choice, see `_WarmDatabases`); 0 closes it with the last connection. `target` a lake:
        `path` is then only the local anchor for disk-space checks. `metadata_url`: the metadata
        database (SFDUCK_METADATA_URL); by default a SQLite file beside `path`."""
        self.target = target if target is not None and target.is_lake else Target("duckdb", path=Path(path))
        self.path = Path(path)
        if self.target.is_lake and self.target.data_path and "://" not in self.target.data_path:
            self.path = Path(self.target.data_path) / "sfduck.lake"  # where the lake's data files grow
        self.lock_timeout_s = lock_timeout_s
        self.memory_limit = memory_limit
        self.keep_warm_s = keep_warm_s
        # beside the DuckDB file (for a lake: the state folder that SFDUCK_DUCKDB_PATH names)
        self.notes_dir = Path(path).parent / "job-notes"
        self.metadata_url = metadata_url
        self.metadata = MetadataDatabase(metadata_url or default_metadata_url(Path(path).parent))

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
        """Read the metadata database, which every read of jobs and statuses uses (health checks);
        the data target is not opened: an analyst holding the file is not an outage."""
        del wait_s  # the metadata database answers at once or not at all
        self.metadata.ping()

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """The data target's one table of sfduck's own, once per process: the commit records."""
        key = self.target.attach_uri if self.is_lake else str(self.path.resolve())
        if key in _migrated:
            return
        with _migrate_lock:
            for sql in COMMITS_DDL:
                con.execute(sql)
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
        other = self.metadata.registrations.claim_source(label)
        if other is None:
            return

        def name(x: str) -> str:
            return "the demo emulator" if x == "demo" else f"the Snowflake account {x!r}"

        raise ConfigError(
            f"The {self.target.describe()} holds tables from {name(other)}, but sfduck is configured for "
            f"{name(label)}. Point {'SFDUCK_TARGET' if self.is_lake else 'SFDUCK_DUCKDB_PATH'} at another "
            f"{'lake' if self.is_lake else 'file'} (or fix the configuration that was not found); nothing was changed."
        )

    # --- registrations (in the metadata database) -----------------------------------------------

    def get_registration(self, schema: str, table: str) -> Registration | None:
        return self.metadata.registrations.get(schema, table)

    def registration_by_id(self, table_id: str) -> Registration:
        return self.metadata.registrations.by_id(table_id)

    def require_active(self, schema: str, table: str) -> Registration:
        return self.metadata.registrations.require_active(schema, table)

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
        return self.metadata.registrations.upsert(
            schema, table, incremental_key=incremental_key, primary_key=primary_key, detect_deletes=detect_deletes,
            include_columns=include_columns, exclude_columns=exclude_columns)

    def deactivate(self, schema: str, table: str) -> Registration:
        return self.metadata.registrations.deactivate(schema, table)

    def list_registrations(self, include_inactive: bool = False) -> list[Registration]:
        return self.metadata.registrations.list(include_inactive)

    def audit(self, action: str, actor: str | None, reg: Registration | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Record who changed what (registrations, schedules); never read back by sfduck itself."""
        self.metadata.registrations.audit(action, actor, reg, details)

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.metadata.registrations.audit_log(limit)

    # --- jobs (in the metadata database) -------------------------------------------------------

    def start_job(self, reg: Registration, strategy: str, transport: str, filter_sql: str | None, *,
                  trigger: str = "cli", started_by: str | None = None, queued: bool = False) -> str:
        """Insert a `running` job (`pending` when `queued` for an executor slot) unless one is
        already pending or running for this table (the metadata database refuses a second one)."""
        sync_id = new_sync_id()
        with _job_lock:
            self._reap_dead_jobs()
            ACTIVE_SYNCS.add(sync_id)
            try:
                self.metadata.jobs.start(reg, sync_id, strategy, transport, filter_sql, trigger=trigger,
                                         started_by=started_by, queued=queued, pid=os.getpid(),
                                         host=socket.gethostname(), process_started=process_start_mark(os.getpid()))
            except BaseException:
                ACTIVE_SYNCS.discard(sync_id)
                raise
        self._reserve_note(sync_id)
        return sync_id

    def mark_running(self, sync_id: str) -> None:
        """A queued job got its executor slot (a job already running is left as it is)."""
        self.metadata.jobs.mark_running(sync_id)

    def mark_committed(self, con: duckdb.DuckDBPyConnection, reg: Registration, sync_id: str,
                       stats: dict[str, Any], transport: str, *, status: str = "completed",
                       **status_fields: Any) -> dict[str, Any]:
        """Inside the caller's data transaction, before its COMMIT: write down that this sync's
        data commits (see record_commit), so a crash between the data's COMMIT and the metadata's
        write (complete_job) still settles the job as the success it was. In a lake the commit's
        snapshot is also labelled with the sync_id, which is how the job finds its snapshot.
        Returns what complete_job takes, as keyword arguments."""
        if status not in SUCCESS_STATUSES:
            raise ValueError(f"mark_committed records a success, not {status!r}")
        record = {"status": status, "stats": stats, "transport": transport, "status_fields": status_fields}
        if self.is_lake:
            con.execute(f"CALL {LAKE_ALIAS}.set_commit_message(?, ?, extra_info => ?)",
                        [COMMIT_AUTHOR, f"sfduck sync of {reg.schema_name}.{reg.table_name}",
                         json.dumps({"sync_id": sync_id})])
        record_commit(con, sync_id, reg.schema_name, reg.table_name, record)
        return {"stats": stats, "transport": transport, "status": status, **status_fields}

    def complete_job(self, reg: Registration, sync_id: str, stats: dict[str, Any], transport: str, *,
                     status: str = "completed", **status_fields: Any) -> None:
        """Record a success in the metadata (`completed`, or `skipped` when nothing had changed),
        after the data's COMMIT (a sync that changed data went through mark_committed first). In
        a lake the job's stats name the snapshot that committed it (`snapshot_id`)."""
        if self.is_lake and status == "completed":
            snapshot = self._snapshot_of(sync_id)
            if snapshot is not None:
                stats = {**stats, "snapshot_id": snapshot}
        self.metadata.jobs.complete(reg, sync_id, stats, transport, status=status, **status_fields)

    def request_cancel(self, sync_id: str) -> dict[str, Any]:
        """Ask a running sync to stop; it ends `cancelled` at its next check (within seconds)."""
        self.reap_dead_jobs()
        self.metadata.jobs.request_cancel(sync_id)
        job = self.get_job(sync_id)
        assert job is not None
        return job

    def cancel_requested(self, sync_id: str) -> bool:
        return self.metadata.jobs.cancel_requested(sync_id)

    def fail_job(self, reg: Registration, sync_id: str, message: str, stats: dict[str, Any],
                 status: str = "failed") -> None:
        """Record the failure; if even that fails (the disk that made the sync fail is still full),
        keep the message in this process, so the job is reaped with its real cause later."""
        try:
            self.metadata.jobs.fail(reg, sync_id, message, stats, status)
        except (SQLAlchemyError, OSError, SfduckError):
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

    def _reap_dead_jobs(self) -> None:
        """Settle the jobs left pending or running by a process of this machine that died: from
        the data's own record (see record_commit), `completed` (or `skipped`) with its stats when
        its data committed, else `failed`, so it no longer blocks its table. The data target is
        opened only when there is such a job; when it cannot be read now (held by another
        process), the jobs wait for the next reaping rather than be settled blind."""
        me = socket.gethostname()
        dead = [job for job in self.metadata.jobs.unfinished()
                if job["host"] == me and not _job_alive(job["sync_id"], job["pid"], job["process_started"])]
        if not dead:
            return
        try:
            committed = self.committed_syncs([job["sync_id"] for job in dead])
        except StoreBusyError:
            return
        for job in dead:
            sync_id = job["sync_id"]
            record = committed.get(sync_id)
            if record is not None:
                reg = self.metadata.registrations.by_id(job["table_id"])
                self.complete_job(reg, sync_id, record["stats"], record["transport"], status=record["status"],
                                  **record["status_fields"])
            else:
                message = (UNRECORDED_FAILURES.get(sync_id) or self._read_note(sync_id)
                           or _stopped_message(job["pid"], job["trigger"]))
                self.metadata.jobs.settle_failed(sync_id, job["table_id"], message)
            UNRECORDED_FAILURES.pop(sync_id, None)
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    def reap_dead_jobs(self) -> None:
        with _job_lock:
            self._reap_dead_jobs()

    def get_job(self, sync_id: str) -> dict[str, Any] | None:
        return self.metadata.jobs.get(sync_id)

    def running_jobs(self) -> list[dict[str, Any]]:
        return self.metadata.jobs.running()

    def history(self, schema: str | None = None, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Jobs, newest first, optionally for one table."""
        return self.metadata.jobs.history(schema, table, limit)

    def find_jobs(self, query: JobQuery, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of the jobs `query` selects, newest first, and how many it selects in all."""
        return self.metadata.jobs.find(query, limit, offset)

    def job_facets(self) -> dict[str, Any]:
        """The values the job filters can take (tables, statuses, triggers, users), for pickers."""
        return self.metadata.jobs.facets()

    def prune_jobs(self, older_than: dt.datetime) -> int:
        """Delete finished jobs created before `older_than` (retention); never a table's last
        success, which incremental syncs and skipping still read."""
        return self.metadata.jobs.prune(older_than)

    def sync_status(self, schema: str, table: str) -> dict[str, Any] | None:
        return self.metadata.jobs.sync_status(schema, table)

    # --- commit records (data target) ----------------------------------------------------------
    # The data target's own record of which syncs committed, written in the data's transaction:
    # the one fact the metadata database cannot know after a crash. (For the storage package.)

    def committed_syncs(self, sync_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """sync_id -> its commit record (see mark_committed), for those of `sync_ids` whose data committed."""
        if not sync_ids:
            return {}
        with self.connect(read_only=True) as con:
            return committed_syncs(con, sync_ids)

    def _snapshot_of(self, sync_id: str) -> int | None:
        """The lake snapshot whose commit message names this sync (see mark_committed)."""
        with self.connect(read_only=True) as con:
            row = con.execute(f"SELECT max(snapshot_id) FROM {LAKE_ALIAS}.snapshots() WHERE author = ? "
                              "AND commit_extra_info = ?", [COMMIT_AUTHOR, json.dumps({"sync_id": sync_id})]
                              ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @staticmethod
    def _job_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        """sync_id -> the lake snapshot that committed it (see mark_committed)."""
        rows = con.execute(
            f"SELECT snapshot_id, commit_extra_info FROM {LAKE_ALIAS}.snapshots() WHERE author = ?", [COMMIT_AUTHOR]
        ).fetchall()
        found: dict[str, int] = {}
        for snapshot_id, extra in rows:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                found[json.loads(extra)["sync_id"]] = int(snapshot_id)
        return found

    # --- lake retention --------------------------------------------------------------------

    def lake_snapshots(self) -> list[LakeSnapshot]:
        """Every snapshot of the lake, oldest first, with the table whose completed sync committed it
        (None: bookkeeping)."""
        self.require_lake("Retention")
        with self.connect(read_only=True) as con:
            rows = con.execute(f"SELECT snapshot_id, snapshot_time FROM {LAKE_ALIAS}.snapshots() ORDER BY 1"
                               ).fetchall()
            by_sync = self._job_snapshots(con)
        tables = self.metadata.jobs.tables_of(list(by_sync), status="completed") if by_sync else {}
        table_of = {snapshot: tables.get(sync_id) for sync_id, snapshot in by_sync.items()}
        return [LakeSnapshot(int(sid), _aware(at), table_of.get(int(sid))) for sid, at in rows]

    def expire_lake_snapshots(self, snapshot_ids: Sequence[int],
                              orphan_grace: dt.timedelta = dt.timedelta(hours=6)) -> dict[str, int]:
        """DuckLake's own maintenance: expire these snapshots (their versions can no longer be
        read), delete the files only they used, and delete files no snapshot knows (left by syncs
        killed mid-load) once older than `orphan_grace` - never younger, for a running sync's files
        are unknown to every snapshot until it commits (SFDUCK_SYNC_TIMEOUT bounds a sync). The
        jobs of expired snapshots no longer name them (`snapshot_id`)."""
        self.require_lake("Retention")
        if orphan_grace < dt.timedelta(hours=1):
            raise SfduckError("Keep orphaned files for an hour at least: a running sync's files are orphans "
                              "until it commits.")
        with self.connect() as con:
            wanted = {int(i) for i in snapshot_ids}
            expired_syncs = [s for s, snap in self._job_snapshots(con).items() if snap in wanted]
            expired = con.execute("CALL ducklake_expire_snapshots(?, versions => ?)",
                                  [LAKE_ALIAS, [int(i) for i in snapshot_ids]]).fetchall() if snapshot_ids else []
            old_files = con.execute("CALL ducklake_cleanup_old_files(?, cleanup_all => true)", [LAKE_ALIAS]).fetchall()
            orphans = con.execute("CALL ducklake_delete_orphaned_files(?, older_than => ?)",
                                  [LAKE_ALIAS, now() - orphan_grace]).fetchall()
        self.metadata.jobs.forget_snapshots(expired_syncs)
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
