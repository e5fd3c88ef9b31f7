"""Looking at synced tables: first rows, counts, SUMMARIZE, and the analysts' read-only SQL box.

The fixed previews run through `Store` (our own SQL over validated names). The SQL box runs text
typed by a user, so it is treated as hostile and isolated: a short-lived child process
(`sfduck_core.sql_sandbox`) opens the DuckDB file with `read_only=True` and
`enable_external_access=False` (locked), so it cannot write, attach, install or read local files or
the network whatever the text says, and runs a query only if DuckDB's parse of it reaches nothing
but the synced tables and DuckDB's built-in functions (`sfduck_core.sql_policy`: no scanner of
another database, no setting, secret or database listing). The child bounds its result in rows
and bytes and its own memory through the OS, spills only into a private temp directory of bounded
size, gets no secrets in its environment, and is killed at the time limit; each user runs one query
at a time. The sqlglot check
in front of it only exists to give friendlier messages for the obvious mistakes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sfduck_core.config import Target
from sfduck_core.display import beyond_python_dates, duckdb_text, exact_frame, with_duckdb_types
from sfduck_core.errors import SfduckError, StoreBusyError
from sfduck_core.sql_policy import builtin_functions
from sfduck_core.sql_sandbox import memory_message
from sfduck_core.sqlident import qualified, quote_ident
from sfduck_core.storage import Storage, open_storage, release_all
from sfduck_core.store import Store

PREVIEW_ROWS = 100
QUERY_MAX_ROWS = 10_000
QUERY_MAX_BYTES = 32 << 20  # default of Settings.sql_max_bytes (SFDUCK_SQL_MAX_BYTES)
QUERY_TOTAL_BYTES = 256 << 20  # default of Settings.sql_total_bytes (SFDUCK_SQL_TOTAL_BYTES)
QUERY_MIN_GRANT = 1 << 20  # below this much room left in the total, a query is refused rather than cut
QUERY_TIMEOUT_S = 15.0
QUERY_MAX_CONCURRENT = 2  # SQL box children at once in the whole dashboard process
BUSY_RETRY_S = 3.0  # how long the child waits for a sync to release the file
MAX_QUERY_LENGTH = 20_000
CHILD_MEMORY_LIMIT = "256MB"  # DuckDB's own limit inside the child
CHILD_MAX_MEMORY_BYTES = (256 + 512) << 20  # the OS limit on the child's heap: DuckDB's plus Python's and Arrow's
CHILD_MAX_TEMP_SIZE = "1GB"  # what the child may spill to its private temp directory
SUMMARY_CACHE_SIZE = 32
_CHILD_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class QueryRefusedError(SfduckError):
    """The SQL box text is not one read-only query, or it tried something the sandbox forbids."""


class QueryTimeoutError(SfduckError):
    """The SQL box query ran past its time limit and was stopped."""


class QueryMemoryError(SfduckError):
    """The SQL box query needed more memory (or temp disk) than the child is allowed."""


class TooManyQueriesError(QueryRefusedError):
    """The user already has a query running, or the SQL box is at its global limit."""


_ERRORS: dict[str | None, type[SfduckError]] = {
    "busy": StoreBusyError, "refused": QueryRefusedError, "too_big": QueryRefusedError,
    "memory": QueryMemoryError,
}


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    # "rows" or "bytes" when the result was cut at that cap, "total" when at the room left in the
    # process's total for every session's results (SFDUCK_SQL_TOTAL_BYTES), None when it is whole
    cut: str | None
    elapsed_s: float

    @property
    def truncated(self) -> bool:
        return self.cut is not None

    def to_pandas(self) -> pd.DataFrame:
        """A frame Streamlit can always render: types it cannot show arrive as DuckDB's text."""
        return displayable(self.table).to_pandas()


# --- fixed previews (run in the dashboard process, through Store) ----------------------------


def _require_table(store: Store, con: Any, schema: str, table: str) -> None:
    if not store.storage.table_exists(con, schema, table):
        raise SfduckError(
            f"{schema}.{table} has not been synced into DuckDB yet; run a sync first (Sync page)."
        )


def _as_of(store: Store, schema: str, table: str, snapshot_id: int | None) -> tuple[str, list[Any]]:
    """The table as the sync that made snapshot `snapshot_id` (a job's) left it; today's when None."""
    return store.storage.table_at(schema, table, snapshot_id)


def first_rows(store: Store, schema: str, table: str, limit: int = PREVIEW_ROWS,
               snapshot_id: int | None = None) -> pa.Table:
    """The first `limit` rows in storage order: a glance, not a sample (as of a lake snapshot if given).
    Arrow keeps every value exact; `sfduck_core.display` turns them into text for people."""
    source, params = _as_of(store, schema, table, snapshot_id)
    with store.connect(read_only=True) as con:
        _require_table(store, con, schema, table)
        rows = con.execute(f"SELECT * FROM {source} LIMIT ?", [*params, int(limit)]).to_arrow_table()
        types = {name: kind for name, kind in store.storage.table_columns(con, schema, table) if kind == "JSON"}
        return with_duckdb_types(rows, types)


def row_count(store: Store, schema: str, table: str, snapshot_id: int | None = None) -> int:
    source, params = _as_of(store, schema, table, snapshot_id)
    with store.connect(read_only=True) as con:
        _require_table(store, con, schema, table)
        return int(con.execute(f"SELECT count(*) FROM {source}", params).fetchone()[0])


def sync_versions(store: Store, schema: str, table: str) -> list[dict[str, Any]]:
    """The completed syncs of a table whose lake snapshot can still be read, newest first."""
    if not store.storage.capabilities.time_travel:
        return []
    return [job for job in store.history(schema, table)
            if job["status"] == "completed" and job["stats"].get("snapshot_id") is not None]


# Columns SUMMARIZE cannot take as they are, summarized as text whose order is theirs (their type
# name is kept): a TIME_NS cannot be averaged (a Binder Error), a BLOB's min and max would be raw
# bytes, never hex (upper-case hex sorts as the bytes do).
_SUMMARY_AS_TEXT = {"TIME_NS": "CAST({} AS VARCHAR)", "BLOB": "'0x' || hex({})"}
# SUMMARIZE's columns (it types the numbers of a column that has none, a text's avg, as INTEGER)
_SUMMARY_SCHEMA = pa.schema([*((name, pa.string()) for name in ("column_name", "column_type", "min", "max")),
                             ("approx_unique", pa.int64()),
                             *((name, pa.string()) for name in ("avg", "std", "q25", "q50", "q75")),
                             ("count", pa.int64()), ("null_percentage", pa.decimal128(9, 2))])


def summarize(store: Store, schema: str, table: str) -> pa.Table:
    """DuckDB's SUMMARIZE: per-column min, max, distinct estimate, nulls, quartiles."""
    with store.connect(read_only=True) as con:
        _require_table(store, con, schema, table)
        columns = store.storage.table_columns(con, schema, table)
        as_text = {name: kind for name, kind in columns if kind in _SUMMARY_AS_TEXT}
        replace = (" REPLACE (" + ", ".join(f"{_SUMMARY_AS_TEXT[kind].format(quote_ident(n))} AS {quote_ident(n)}"
                                            for n, kind in as_text.items()) + ")") if as_text else ""
        source = f"SELECT *{replace} FROM {qualified(schema, table)}"
        try:
            summary = con.execute(f"SUMMARIZE {source}").to_arrow_table()
        except duckdb.OutOfRangeException:
            # a DOUBLE whose standard deviation overflows (1.7976931348623157e+308 and -1e308 in one
            # column): SUMMARIZE refuses the whole table, so each column is summarized on its own
            summary = pa.concat_tables([_summarize_column(con, source, name, kind).cast(_SUMMARY_SCHEMA)
                                        for name, kind in columns])
    if as_text:
        names = summary.column("column_name")
        kinds = summary.column("column_type")
        for name, kind in as_text.items():
            kinds = pc.if_else(pc.equal(names, name), kind, kinds)
        summary = summary.set_column(summary.schema.get_field_index("column_type"), "column_type", kinds)
    return summary


def _summarize_column(con: duckdb.DuckDBPyConnection, source: str, name: str, kind: str) -> pa.Table:
    """SUMMARIZE of one column of `source`; where its standard deviation is out of DuckDB's range,
    the same row with no `std` (the rest of SUMMARIZE's numbers, from the same functions)."""
    column = quote_ident(name)
    try:
        return con.execute(f"SUMMARIZE SELECT {column} FROM ({source})").to_arrow_table()
    except duckdb.OutOfRangeException:
        pass
    quartiles = ", ".join(f"CAST(approx_quantile({column}, {q}) AS VARCHAR) AS q{round(q * 100)}"
                          for q in (0.25, 0.5, 0.75))
    return con.execute(
        f"SELECT CAST(? AS VARCHAR) AS column_name, CAST(? AS VARCHAR) AS column_type, "
        f"CAST(min({column}) AS VARCHAR) AS min, CAST(max({column}) AS VARCHAR) AS max, "
        f"approx_count_distinct({column}) AS approx_unique, CAST(avg({column}) AS VARCHAR) AS avg, "
        f"CAST(NULL AS VARCHAR) AS std, {quartiles}, count(*) AS count, "
        f"CAST(CASE WHEN count(*) > 0 THEN 100.0 * (count(*) - count({column})) / count(*) END AS DECIMAL(9,2)) "
        f"AS null_percentage FROM ({source})", [name, kind]).to_arrow_table()


_SUMMARIES: OrderedDict[tuple[str, str, str, str | None], pa.Table] = OrderedDict()
_SUMMARIES_LOCK = threading.Lock()


def cached_summary(store: Store, schema: str, table: str, synced_by: str | None) -> pa.Table:
    """SUMMARIZE scans the whole table, so compute it once per table and sync (`synced_by` is the
    last successful sync id), shared by every session, instead of on every rerun."""
    key = (str(store.path), schema, table, synced_by)
    with _SUMMARIES_LOCK:
        if key in _SUMMARIES:
            _SUMMARIES.move_to_end(key)
            return _SUMMARIES[key]  # Arrow tables cannot be changed by the caller
    summary = summarize(store, schema, table)
    with _SUMMARIES_LOCK:
        _SUMMARIES[key] = summary
        while len(_SUMMARIES) > SUMMARY_CACHE_SIZE:
            _SUMMARIES.popitem(last=False)
    return summary


# --- showing and downloading results ---------------------------------------------------------


def _needs_text(column: pa.ChunkedArray) -> bool:
    kind = column.type
    return (isinstance(kind, pa.BaseExtensionType) or pa.types.is_interval(kind) or pa.types.is_union(kind)
            or pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind)
            or beyond_python_dates(column))


def displayable(table: pa.Table, only: Any = _needs_text) -> pa.Table:
    """The table with every column that pandas or Streamlit cannot show faithfully turned into text."""
    for index, field in enumerate(table.schema):
        if only(table.column(index)):
            table = table.set_column(index, pa.field(field.name, pa.string()), duckdb_text(table.column(index)))
    return table


def to_csv_bytes(table: pa.Table) -> bytes:
    """The values as the grid shows them (sfduck_core.display): exact digits, NULL an empty field."""
    return exact_frame(table).to_csv(index=False).encode("utf-8")


def _has_type(kind: pa.DataType, test: Any) -> bool:
    return test(kind) or any(_has_type(kind.field(i).type, test) for i in range(kind.num_fields))


def _parquet_cannot_store(column: pa.ChunkedArray) -> bool:
    return _has_type(column.type, lambda kind: pa.types.is_interval(kind) or pa.types.is_union(kind))


def to_parquet_bytes(table: pa.Table) -> bytes:
    """Typed Parquet; only the types Parquet has no equivalent for are written as text."""
    buffer = io.BytesIO()
    pq.write_table(displayable(table, _parquet_cannot_store), buffer)
    return buffer.getvalue()


# --- the read-only SQL box -------------------------------------------------------------------

_READ_ONLY_COMMANDS = {"SUMMARIZE", "DESCRIBE", "SHOW"}


def starter_query(schema: str, table: str, limit: int = 100) -> str:
    """The SQL box's initial text: a query the analyst can edit rather than type from scratch."""
    return f"SELECT * FROM {qualified(schema, table)} LIMIT {int(limit)}"


def check_read_only_query(sql: str) -> str:
    """Return the query text if it is one read-only statement; otherwise explain what to change.

    This is a courtesy check for clear messages; the sandboxed child is what actually enforces it.
    """
    text = (sql or "").strip().rstrip(";").strip()
    if not text:
        raise QueryRefusedError("Type a query first, for example: SELECT * FROM \"SCHEMA\".\"TABLE\" LIMIT 10")
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryRefusedError(f"The query is longer than {MAX_QUERY_LENGTH} characters; shorten it.")
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryRefusedError(f"The query could not be parsed: {first}. Check the syntax and try again.") from None
    if len(statements) != 1:
        raise QueryRefusedError(
            f"The SQL box runs exactly one statement; found {len(statements)}. Remove the extra ones."
        )
    statement = statements[0]
    if isinstance(statement, exp.Query | exp.Describe | exp.Show | exp.Summarize):
        return text
    if isinstance(statement, exp.Command) and str(statement.this).upper() in _READ_ONLY_COMMANDS:
        return text
    kind = statement.key.upper() if not isinstance(statement, exp.Command) else str(statement.this).upper()
    raise QueryRefusedError(
        f"The SQL box is read-only: {kind} statements are not allowed. Use SELECT (or SUMMARIZE/DESCRIBE); "
        "tables change only through syncs."
    )


class _QuerySlots:
    """Who is running a SQL box query right now, so one analyst cannot start a pile of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()

    @contextlib.contextmanager
    def claim(self, user: str | None, limit: int) -> Iterator[None]:
        key = user if user is not None else f"\0anonymous-{uuid.uuid4()}"  # callers without a login never clash
        with self._lock:
            if key in self._running:
                raise TooManyQueriesError("You already have a query running; wait for it to finish (or be "
                                          "stopped at the time limit) before starting another.")
            if len(self._running) >= limit:
                raise TooManyQueriesError(f"The SQL box is already running {limit} queries, its limit; try "
                                          "again in a few seconds.")
            self._running.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(key)


_SLOTS = _QuerySlots()


class _ResultBudget:
    """The bytes of SQL box results the process holds, across every session and query.

    Each session keeps its last result (to show and download it), so per-query caps alone let many
    sessions grow the server without bound. A query reserves what it may receive before its child
    starts (at most the room left, so queries running at once never overshoot), gives back what it
    did not use, and holds the rest for as long as its QueryResult lives: releasing it is tied to
    the result being dropped (a new query, a closed session), whoever held it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = 0

    def reserve(self, wanted: int, total: int) -> int:
        with self._lock:
            grant = min(wanted, total - self.held)
            if grant < min(wanted, QUERY_MIN_GRANT):
                raise TooManyQueriesError(
                    f"The SQL box's results held in this server for everyone reach their limit "
                    f"({total / (1 << 20):.3g} MB, SFDUCK_SQL_TOTAL_BYTES); try again when other analysts' results "
                    "are closed, or ask an admin to raise it.")
            self.held += grant
            return grant

    def release(self, size: int) -> None:
        with self._lock:
            self.held -= size

    def keep(self, result: QueryResult, granted: int) -> QueryResult:
        """Hold what `result` takes of its grant until it is garbage, give back the rest now."""
        kept = min(granted, result.table.nbytes)
        self.release(granted - kept)
        weakref.finalize(result, self.release, kept)
        return result


_BUDGET = _ResultBudget()


def _child_env() -> dict[str, str]:
    """Only what Python needs to start: the child never sees Snowflake credentials or other secrets."""
    keep = {name: os.environ[name] for name in _CHILD_ENV_KEEP if name in os.environ}
    pythonpath = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**keep, "PYTHONPATH": pythonpath}


@contextlib.contextmanager
def _work_directory(db_path: Path) -> Iterator[Path]:
    """A private directory for one child, beside the database so that the child can hard-link it
    (see sql_sandbox); removed afterwards even if the child was killed."""
    try:
        workdir = Path(tempfile.mkdtemp(prefix=".sfduck-sql-", dir=db_path.parent))
    except OSError:
        workdir = Path(tempfile.mkdtemp(prefix="sfduck-sql-"))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _spawn(request: dict[str, Any], timeout_s: float) -> tuple[bytes, bytes, int]:
    release_all()  # the child must be able to open the file
    proc = subprocess.Popen([sys.executable, "-m", "sfduck_core.sql_sandbox"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(),
                            cwd=str(_PROJECT_ROOT))
    try:
        out, err = proc.communicate(json.dumps(request).encode("utf-8"), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise QueryTimeoutError(
            f"The query was stopped after {timeout_s:.0f} s. Narrow it down (add a WHERE or LIMIT, or "
            "aggregate) and run it again."
        ) from None
    return out, err, proc.returncode


def _result_from(out: bytes, err: bytes, returncode: int, elapsed: float) -> QueryResult:
    header_line, _, payload = out.partition(b"\n")
    try:
        header = json.loads(header_line)
    except ValueError:
        detail = err.decode("utf-8", "replace")
        if returncode < 0 or "MemoryError" in detail or "bad_alloc" in detail:  # killed, or died allocating
            raise QueryMemoryError(memory_message(CHILD_MAX_MEMORY_BYTES)) from None
        last = detail.strip().splitlines()[-1:] or ["no output"]
        raise SfduckError(f"The query process failed unexpectedly ({last[0]}); try again.") from None
    if not header.get("ok"):
        raise _ERRORS.get(header.get("kind"), SfduckError)(header.get("message", "The query failed."))
    with pa.ipc.open_stream(payload) as reader:
        table = reader.read_all()
    return QueryResult(table, header.get("cut"), elapsed)


def run_read_only_query(db_path: str | os.PathLike[str] | Target | Storage, sql: str, *, user: str | None = None,
                        max_rows: int = QUERY_MAX_ROWS, max_bytes: int = QUERY_MAX_BYTES,
                        timeout_s: float = QUERY_TIMEOUT_S, busy_retry_s: float = BUSY_RETRY_S,
                        max_concurrent: int = QUERY_MAX_CONCURRENT,
                        total_bytes: int = QUERY_TOTAL_BYTES) -> QueryResult:
    """Run one user query in a sandboxed child process; the result is cut at `max_rows` rows or
    `max_bytes` bytes, whichever comes first, by the child, and at the room left in `total_bytes`,
    what every result of the process may hold together (refused when less than 1 MB is left).

    The dashboard never keeps the DuckDB file open while idle, so the child can open it read-only;
    if a sync is writing at that moment the child retries for `busy_retry_s` and then reports busy.
    `user` gets one query at a time, and at most `max_concurrent` run in the whole process.
    """
    text = check_read_only_query(sql)
    storage = db_path if isinstance(db_path, Storage) else open_storage(
        db_path if isinstance(db_path, Target) else Target("duckdb", path=Path(db_path)))
    path, opening = storage.sandbox_request()
    with _SLOTS.claim(user, max_concurrent), _work_directory(path) as workdir:
        granted = _BUDGET.reserve(int(max_bytes), int(total_bytes))
        request = {"path": str(path), "workdir": str(workdir), "sql": text, "max_rows": int(max_rows),
                   "max_bytes": granted, "busy_retry_s": float(busy_retry_s),
                   "memory_limit": CHILD_MEMORY_LIMIT, "max_memory_bytes": CHILD_MAX_MEMORY_BYTES,
                   "max_temp_size": CHILD_MAX_TEMP_SIZE, "functions": builtin_functions().as_json(), **opening}
        try:
            result = _run_child(request, timeout_s, storage)
        except BaseException:
            _BUDGET.release(granted)
            raise
        if result.cut == "bytes" and granted < max_bytes:
            result = replace(result, cut="total")
        return _BUDGET.keep(result, granted)


def _run_child(request: dict[str, Any], timeout_s: float, storage: Storage) -> QueryResult:
    started = time.monotonic()
    out, err, returncode = _spawn(request, timeout_s)
    try:
        return _result_from(out, err, returncode, time.monotonic() - started)
    except SfduckError as exc:
        redacted = storage.redact(str(exc))  # never show the catalog's password
        if redacted == str(exc):
            raise
        raise type(exc)(redacted) from None
