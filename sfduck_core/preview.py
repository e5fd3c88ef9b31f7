"""Looking at synced tables: first rows, counts, SUMMARIZE, and the analysts' read-only SQL box.

The fixed previews run through `Store` (our own SQL over validated names). The SQL box runs text
typed by a user, so it is treated as hostile and isolated rather than inspected: a short-lived child
process opens the DuckDB file with `read_only=True` and `enable_external_access=False` (locked), so
it cannot write, attach, install or read local files or the network whatever the text says; its
result is bounded in rows, and the process is killed at the time limit. The sqlglot check in front
of it only exists to give friendlier messages for the obvious mistakes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sfduck_core.errors import SfduckError, StoreBusyError
from sfduck_core.sqlident import qualified
from sfduck_core.store import Store

PREVIEW_ROWS = 100
QUERY_MAX_ROWS = 10_000
QUERY_TIMEOUT_S = 15.0
BUSY_RETRY_S = 3.0  # how long the child waits for a sync to release the file
MAX_QUERY_LENGTH = 20_000
CHILD_MEMORY_LIMIT = "256MB"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class QueryRefusedError(SfduckError):
    """The SQL box text is not one read-only query, or it tried something the sandbox forbids."""


class QueryTimeoutError(SfduckError):
    """The SQL box query ran past its time limit and was stopped."""


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    truncated: bool  # more rows existed than were fetched
    elapsed_s: float

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


# --- fixed previews (run in the dashboard process, through Store) ----------------------------


def _require_table(con: Any, schema: str, table: str) -> None:
    if not Store.table_exists(con, schema, table):
        raise SfduckError(
            f"{schema}.{table} has not been synced into DuckDB yet; run a sync first (Sync page)."
        )


def first_rows(store: Store, schema: str, table: str, limit: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first `limit` rows in storage order: a glance, not a sample."""
    with store.connect() as con:
        _require_table(con, schema, table)
        return con.execute(f"SELECT * FROM {qualified(schema, table)} LIMIT ?", [int(limit)]).df()


def row_count(store: Store, schema: str, table: str) -> int:
    with store.connect() as con:
        _require_table(con, schema, table)
        return Store.count_rows(con, schema, table)


def summarize(store: Store, schema: str, table: str) -> pd.DataFrame:
    """DuckDB's SUMMARIZE: per-column min, max, distinct estimate, nulls, quartiles."""
    with store.connect() as con:
        _require_table(con, schema, table)
        return con.execute(f"SUMMARIZE {qualified(schema, table)}").df()


# --- downloads -------------------------------------------------------------------------------


def to_csv_bytes(table: pa.Table) -> bytes:
    return table.to_pandas().to_csv(index=False).encode("utf-8")


def to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
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


def run_read_only_query(db_path: str | os.PathLike[str], sql: str, *, max_rows: int = QUERY_MAX_ROWS,
                        timeout_s: float = QUERY_TIMEOUT_S, busy_retry_s: float = BUSY_RETRY_S) -> QueryResult:
    """Run one user query in a sandboxed child process and return at most `max_rows` rows.

    The dashboard never keeps the DuckDB file open while idle, so the child can open it read-only;
    if a sync is writing at that moment the child retries for `busy_retry_s` and then reports busy.
    """
    text = check_read_only_query(sql)
    path = Path(db_path)
    if not path.is_file():
        raise SfduckError(f"There is no DuckDB file at {path} yet; sync a table first.")
    request = json.dumps({"path": str(path), "sql": text, "max_rows": int(max_rows),
                          "busy_retry_s": float(busy_retry_s), "memory_limit": CHILD_MEMORY_LIMIT})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PROJECT_ROOT),
                                                                    os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sfduck_core.sql_sandbox"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(_PROJECT_ROOT))
    try:
        out, err = proc.communicate(request.encode("utf-8"), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise QueryTimeoutError(
            f"The query was stopped after {timeout_s:.0f} s. Narrow it down (add a WHERE or LIMIT, or "
            "aggregate) and run it again."
        ) from None
    elapsed = time.monotonic() - started
    header_line, _, payload = out.partition(b"\n")
    try:
        header = json.loads(header_line)
    except ValueError:
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise SfduckError(f"The query process failed unexpectedly ({detail[0]}); try again.") from None
    if not header.get("ok"):
        message = header.get("message", "The query failed.")
        if header.get("kind") == "busy":
            raise StoreBusyError(message)
        if header.get("kind") == "refused":
            raise QueryRefusedError(message)
        raise SfduckError(message)
    with pa.ipc.open_stream(payload) as reader:
        table = reader.read_all()
    return QueryResult(table, bool(header.get("truncated")), elapsed)
