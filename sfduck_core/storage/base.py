"""The Storage interface: where synced tables live (a DuckDB file or a DuckLake).

One implementation per target; callers never ask which one they have. What only some targets can
do (keep earlier versions, read them, expire them) is declared in `Capabilities` and offered as
methods that refuse with a clear message on a target without the ability.

One rule for connections (as in Store): a method that opens its own connection is one short
operation; a method that takes part in a caller's transaction takes the connection as its first
argument and never commits.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from sfduck_core.config import Target
from sfduck_core.errors import Holder, SfduckError
from sfduck_core.sqlident import qualified, quote_ident

STAGING_PREFIX = "__sfduck_staging_"
# sfduck's metadata schema inside the data target (a DuckDB file or a lake written by this
# release keeps it there): never one of the synced tables
METADATA_SCHEMA = "sfduck_meta"
COMMITS_TABLE = qualified(METADATA_SCHEMA, "sync_commits")


@dataclass(frozen=True)
class Capabilities:
    """What a target can do beyond holding the current version of each table."""

    snapshots: bool  # every commit is a version: listed, labelled with its sync_id (`snapshots()`...)
    time_travel: bool  # a table can be read as an earlier version left it (`table_at`)
    retention: bool  # old versions can be expired and their files deleted (`expire_snapshots`)
    readers_never_wait: bool  # a read-only connection never waits for a writer of another process
    exact_types: bool  # every DuckDB type is stored as it is (see `column_type`)


@dataclass(frozen=True)
class WaitPolicy:
    """How a writer waits for a data file that another process holds, instead of `lock_timeout_s`:
    a sync waits up to `wait_s` (SFDUCK_DATA_WAIT), says whom it waits for (`on_wait(holder)`,
    called when the wait starts and whenever the holder changes), stops waiting when `should_stop()`
    (a cancel) and hears `on_resume()` once it has the file. See `waiting_for_data`."""

    wait_s: float
    on_wait: Callable[[Holder | None], None] = lambda holder: None
    should_stop: Callable[[], bool] = lambda: False
    on_resume: Callable[[], None] = lambda: None


# for reads a person waits on (a preview, the SQL box) and housekeeping: a held file is answered at once
DONT_WAIT = WaitPolicy(wait_s=0.0)

_WAIT_POLICY: contextvars.ContextVar[WaitPolicy | None] = contextvars.ContextVar("sfduck_wait_policy", default=None)


@contextlib.contextmanager
def waiting_for_data(policy: WaitPolicy) -> Iterator[None]:
    """Every writing connect of this thread (a sync's) waits for a held data file by `policy`."""
    token = _WAIT_POLICY.set(policy)
    try:
        yield
    finally:
        _WAIT_POLICY.reset(token)


def wait_policy() -> WaitPolicy | None:
    """The policy `waiting_for_data` set for this thread, if any."""
    return _WAIT_POLICY.get()


class UnsupportedByTargetError(SfduckError):
    """An ability this target does not have (see Capabilities)."""


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    snapshot_time: dt.datetime


class Storage(ABC):
    """A data target: connections, a writer's turn, column types and table DDL."""

    capabilities: ClassVar[Capabilities]
    label: ClassVar[str]  # what it is, in messages: "file" or "lake"
    place: ClassVar[str]  # where the tables are, in a sentence: "DuckDB" or "the lake"
    setting: ClassVar[str]  # the setting that points sfduck at it

    def __init__(self, target: Target, *, lock_timeout_s: float = 30.0, memory_limit: str = "256MB",
                 keep_warm_s: float = 0.0) -> None:
        self.target = target
        self.lock_timeout_s = lock_timeout_s
        self.memory_limit = memory_limit
        self.keep_warm_s = keep_warm_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    # --- identity --------------------------------------------------------------------------

    @property
    @abstractmethod
    def path(self) -> Path | None:
        """The local anchor for disk-space checks (where the data grows); None when the data is
        in object storage."""

    @property
    @abstractmethod
    def key(self) -> str:
        """Names this target among all others in this process (for per-target caches)."""

    def describe(self) -> str:
        """For logs and messages: never a password."""
        return self.target.describe()

    @abstractmethod
    def local_places(self) -> list[tuple[str, str, Path]]:
        """What this target writes on this machine, for disk checks: (what, where as configured,
        the folder it grows in)."""

    def unreachable(self) -> list[str]:
        """Why a part of the target on another machine cannot be reached (it is only connected to:
        nothing is created); empty when all is reachable or local."""
        return []

    # --- connections -----------------------------------------------------------------------

    @abstractmethod
    def connect(self, read_only: bool = False) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection for one operation: writing ones take a writer's turn (waiting at most
        `lock_timeout_s` for other processes, then StoreBusyError); `read_only` ones may skip it
        where the target lets readers read meanwhile (`capabilities.readers_never_wait`)."""

    def ping(self, wait_s: float = 2.0) -> None:
        """Open the storage and read it, waiting at most `wait_s` for another process (health checks)."""
        quick = type(self)(self.target, lock_timeout_s=min(wait_s, self.lock_timeout_s),
                           memory_limit=self.memory_limit)
        with quick.connect(read_only=True) as con:
            con.execute("SELECT 1").fetchone()

    @abstractmethod
    def exists(self) -> bool:
        """Whether the target has been created (looking never creates it)."""

    @abstractmethod
    def sandbox_request(self) -> tuple[Path, dict[str, Any]]:
        """What a child process needs to open this target read-only (the SQL box's sandbox): the
        absolute path it works beside, and the settings it opens it with. SfduckError when there
        is nothing to read yet."""

    def redact(self, text: str) -> str:
        """`text` (an error message) with the target's secrets masked."""
        return self.target.redact(text)

    def release(self) -> None:  # noqa: B027 - nothing to let go by default
        """Let go of what this process keeps open of the target between operations (so another
        process, an analyst's or the SQL box's child, can open it)."""

    # --- column types ---------------------------------------------------------------------

    def column_type(self, duck_type: str) -> str:
        """The type a column of DuckDB type `duck_type` gets in this target."""
        return duck_type

    def tune_metadata(self, con: duckdb.DuckDBPyConnection, schema: str) -> None:  # noqa: B027
        """After sfduck's schema in the target is created: settings it needs in this target."""

    # --- commit records --------------------------------------------------------------------
    # The data target's own note of which syncs committed, written in the data's transaction: the
    # one fact the metadata database (another database) cannot know after a crash between the
    # data's COMMIT and the job's record.

    def prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create sfduck's one table in the target (once per process, before other use)."""
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(METADATA_SCHEMA)}")
        con.execute(f"CREATE TABLE IF NOT EXISTS {COMMITS_TABLE} (sync_id VARCHAR NOT NULL, "
                    "schema_name VARCHAR NOT NULL, table_name VARCHAR NOT NULL, committed_at TIMESTAMPTZ NOT NULL, "
                    "record JSON NOT NULL)")
        self.tune_metadata(con, METADATA_SCHEMA)

    def record_commit(self, con: duckdb.DuckDBPyConnection, sync_id: str, schema: str, table: str,
                      record_json: str) -> None:
        """Note in the caller's open data transaction that `sync_id` commits with it; `record_json`
        is what completing its job takes."""
        con.execute(f"INSERT INTO {COMMITS_TABLE} VALUES (?, ?, ?, ?, ?)",
                    [sync_id, schema, table, dt.datetime.now(dt.UTC), record_json])

    def committed_syncs(self, con: duckdb.DuckDBPyConnection, sync_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """sync_id -> its commit record, for those of `sync_ids` whose data committed."""
        rows = con.execute(f"SELECT sync_id, record FROM {COMMITS_TABLE} WHERE list_contains(?, sync_id)",
                           [list(sync_ids)]).fetchall()
        return {sync_id: json.loads(record) for sync_id, record in rows}

    # --- tables ----------------------------------------------------------------------------

    def table_exists(self, con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
        return bool(
            con.execute(
                "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ?",
                [schema, table],
            ).fetchone()
        )

    def table_columns(self, con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [schema, table],
            ).fetchall()
        ]

    def create_table(self, con: duckdb.DuckDBPyConnection, schema: str, table: str,
                     columns: Sequence[tuple[str, str]]) -> None:
        """Create `schema`.`table` with `columns` (name, DuckDB type), each in this target's type."""
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        cols = ", ".join(f"{quote_ident(name)} {self.column_type(duck_type)}" for name, duck_type in columns)
        con.execute(f"CREATE TABLE {qualified(schema, table)} ({cols})")

    def replace_table(self, con: duckdb.DuckDBPyConnection, schema: str, table: str, staging: str) -> None:
        """Swap the staging table in for the live one (inside the caller's transaction)."""
        con.execute(f"DROP TABLE IF EXISTS {qualified(schema, table)}")
        con.execute(f"ALTER TABLE {qualified(schema, staging)} RENAME TO {quote_ident(table)}")

    def count_rows(self, con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
        return int(con.execute(f"SELECT count(*) FROM {qualified(schema, table)}").fetchone()[0])

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

    def synced_tables(self, con: duckdb.DuckDBPyConnection | None = None) -> list[tuple[str, str]]:
        """(schema, table) of every table sfduck has loaded (no metadata, no staging table)."""
        with contextlib.nullcontext(con) if con is not None else self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name <> ? AND NOT starts_with(table_name, ?) "
                "ORDER BY 1, 2",
                [METADATA_SCHEMA, STAGING_PREFIX],
            ).fetchall()
        return [(s, t) for s, t in rows]

    @staticmethod
    def staging_name(sync_id: str) -> str:
        """Unique per sync: the random end of its id (the start of a time-ordered id is its time,
        shared by syncs started in the same millisecond)."""
        return f"{STAGING_PREFIX}{sync_id.replace('-', '')[-16:]}"

    # --- versions (capabilities.snapshots / time_travel / retention) ------------------------

    def require(self, capability: str, what: str) -> None:
        """Refuse `what` (words for the user) unless this target has `capability`."""
        if not getattr(self.capabilities, capability):
            raise UnsupportedByTargetError(
                f"{what} applies to a DuckLake target (SFDUCK_TARGET=ducklake:...); a DuckDB file "
                "keeps only the current version of each table.")

    def snapshots(self, con: duckdb.DuckDBPyConnection) -> list[Snapshot]:
        """Every version of the target, oldest first."""
        self.require("snapshots", "Listing versions")
        raise AssertionError(f"{type(self).__name__} declares snapshots but does not list them")

    def label_commit(self, con: duckdb.DuckDBPyConnection, sync_id: str, message: str) -> None:
        """Label the commit of `con`'s open transaction as sync `sync_id`'s (see `sync_snapshots`)."""
        self.require("snapshots", "Labelling a version")
        raise AssertionError(f"{type(self).__name__} declares snapshots but does not label them")

    def sync_snapshots(self, con: duckdb.DuckDBPyConnection,
                       sync_ids: Sequence[str] | None = None) -> dict[str, int]:
        """sync_id -> the snapshot its commit made (see `label_commit`), for `sync_ids` (all when None)."""
        self.require("snapshots", "Finding a sync's version")
        raise AssertionError(f"{type(self).__name__} declares snapshots but does not map them")

    def table_at(self, schema: str, table: str, snapshot_id: int | None) -> tuple[str, list[Any]]:
        """What to read FROM for `schema`.`table` as snapshot `snapshot_id` left it (the current
        table when None), with its parameters."""
        if snapshot_id is None:
            return qualified(schema, table), []
        self.require("time_travel", "Reading an earlier version")
        raise AssertionError(f"{type(self).__name__} declares time travel but does not read versions")

    def expire_snapshots(self, con: duckdb.DuckDBPyConnection, snapshot_ids: Sequence[int],
                         orphan_grace: dt.timedelta = dt.timedelta(hours=6)) -> dict[str, int]:
        """Expire these snapshots and delete the files no remaining one uses (retention)."""
        self.require("retention", "Retention")
        raise AssertionError(f"{type(self).__name__} declares retention but does not expire")


_MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)?", re.IGNORECASE)


def memory_limit(value: str) -> str:
    if not _MEMORY_LIMIT.fullmatch(value.strip()):
        raise ValueError(f"Invalid DuckDB memory limit {value!r}")
    return value.strip()


def configure(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """The session settings of every sfduck connection."""
    con.execute(f"SET memory_limit = '{memory_limit(limit)}'")
    # progress is tracked (for query_progress) but never printed on the terminal
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
