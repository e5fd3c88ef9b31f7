"""The child process behind the dashboard's read-only SQL box (see `sfduck_core.preview`).

Run as `python -m sfduck_core.sql_sandbox`: reads one JSON request on stdin, caps its own memory
with OS limits, opens the DuckDB file read-only with external access disabled and the configuration
locked, runs one SELECT that reaches only the synced tables and DuckDB's built-in functions (see
`sfduck_core.sql_policy`; checked here, on the connection that runs it), and writes a JSON header
line followed by the result (bounded in rows and in bytes) as an Arrow IPC stream on stdout. Every
limit is enforced here, before anything reaches the dashboard process. It imports only duckdb,
pyarrow and that policy so that it starts quickly; the parent kills it at the time limit and removes
its work directory.

With external access disabled DuckDB still lets queries read the database file itself (it is on
its allowed paths). So the file is opened through a hard link in the child's private work
directory, and the link is removed once the file is open: the only allowed paths then name nothing.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from sfduck_core.sql_policy import Functions, PolicyError, check_query, target_tables

BATCH_ROWS = 1024
# DuckDB's allocator and thread stacks reserve about 1 GB of address space that is never backed by
# memory, so the address-space limit sits well above the data limit that does the real bounding.
ADDRESS_SPACE_HEADROOM = 1536 << 20
_LINK_NAME = "db.duckdb"
_FILE_STATEMENTS = {"COPY", "COPY_DATABASE", "ATTACH", "DETACH", "EXPORT", "LOAD", "EXTENSION"}
_SETTING_STATEMENTS = {"SET", "VARIABLE_SET", "RESET"}


class Refusal(Exception):
    """A request the child answers with a message instead of a result."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def memory_message(limit_bytes: int) -> str:
    """One wording for every way a query can run out of memory (DuckDB's limit, the OS limit, a crash)."""
    return (f"The query needed more memory than the SQL box allows ({limit_bytes >> 20} MB). Filter, "
            "aggregate or select fewer columns, and run it again.")


def _mb(limit_bytes: int) -> str:
    return f"{limit_bytes / (1 << 20):g} MB"


def limit_memory(data_bytes: int) -> None:
    """Let the OS stop the child before it can starve the machine, whatever DuckDB does not track."""
    for which, wanted in ((resource.RLIMIT_DATA, data_bytes), (resource.RLIMIT_AS, data_bytes + ADDRESS_SPACE_HEADROOM)):
        hard = resource.getrlimit(which)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(which, (value, value))


def _describe_error(exc: Exception, request: dict[str, Any]) -> tuple[str, str]:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.OutOfMemoryException) and "max_temp_directory_size" in str(exc):
        return "memory", (f"The query needed more temporary disk space than the SQL box allows "
                          f"({request['max_temp_size']}). Filter, aggregate or select fewer columns.")
    if isinstance(exc, duckdb.OutOfMemoryException | MemoryError):
        return "memory", memory_message(request["max_memory_bytes"])
    if isinstance(exc, duckdb.PermissionException):
        return "refused", (
            "The SQL box cannot read or write files or the network; query the synced tables instead. "
            f"(DuckDB: {text})"
        )
    if isinstance(exc, duckdb.InvalidInputException) and "read-only" in text:
        return "refused", "The SQL box is read-only: tables change only through syncs."
    if isinstance(exc, duckdb.InvalidInputException) and "configuration has been locked" in text:
        return "refused", "The SQL box cannot change DuckDB settings."
    return "error", f"DuckDB could not run the query: {text}"


def _link_database(path: Path, workdir: Path) -> list[Path]:
    """Hard-link the database (and a WAL left by a crash) into the work directory; [] if impossible."""
    links: list[Path] = []
    try:
        for source in (path, path.with_name(path.name + ".wal")):
            if source is path or source.exists():
                target = workdir / (_LINK_NAME + source.name[len(path.name):])
                os.link(source, target)
                links.append(target)
    except OSError:
        for link in links:
            link.unlink(missing_ok=True)
        return []
    return links


_PID_IN_LOCK = re.compile(r"PID (\d+)")  # DuckDB's lock error names the holder ("... PID n ...")


def _program(pid: int) -> str:
    """"python3 (pid 1234)", or "pid 1234" when its name cannot be read (this child stays light:
    no psutil)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
    except OSError:
        name = ""
    return f"{name} (pid {pid})" if name else f"pid {pid}"


def _connect_with_retry(target: Path, path: Path, config: dict[str, Any], busy_retry_s: float
                        ) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + busy_retry_s
    while True:
        try:
            return duckdb.connect(str(target), read_only=True, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise Refusal("missing", f"No usable database at {path}: run a sync first. "
                                         f"(DuckDB: {str(exc).splitlines()[0]})") from None
            holder = _PID_IN_LOCK.search(str(exc))
            if holder is not None and int(holder.group(1)) != os.getppid():
                # not the dashboard's own sync, which lets go in seconds: another program (an
                # analyst's DuckDB) that may keep it for hours, so say whose it is at once
                raise Refusal("busy", f"The DuckDB file is open in {_program(int(holder.group(1)))}; "
                                      "try again when it lets go.") from None
            if time.monotonic() >= deadline:
                raise Refusal("busy", "The database is busy: a sync is loading data right now. "
                                      "Try again in a few seconds.") from None
            time.sleep(0.1)
        except duckdb.Error as exc:
            raise Refusal("missing", f"No usable database at {path}: run a sync first. "
                                     f"(DuckDB: {str(exc).splitlines()[0]})") from None


def open_lake_sandboxed(request: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Attach the lake READ_ONLY (statements made by the parent's Store) so that user SQL can reach
    its tables and, on disk, only the lake's own data folder (DuckLake reads its Parquet files
    through DuckDB's file system, so that one folder stays allowed)."""
    workdir = Path(request["workdir"])
    con = duckdb.connect(config={
        "autoinstall_known_extensions": False, "autoload_known_extensions": False, "threads": 1,
        "memory_limit": request["memory_limit"], "temp_directory": str(workdir),
        "max_temp_directory_size": request["max_temp_size"],
    })
    try:
        for sql in request["lake_setup"]:
            con.execute(sql)
    except duckdb.Error as exc:
        con.close()
        raise Refusal("missing", "The lake could not be opened: run a sync first. "
                                 f"(DuckDB: {str(exc).splitlines()[0]})") from None
    con.execute("SET max_temp_directory_size = ?", [request["max_temp_size"]])  # see open_sandboxed
    data_path = request.get("lake_data_path")
    if data_path:
        con.execute("SET allowed_directories = ?", [[data_path]])
    _close_side_doors(con)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _close_side_doors(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's own walls behind `sfduck_core.sql_policy`: no Python variable read as a table, no
    extension but those already loaded, secrets never shown unredacted."""
    for setting in ("python_enable_replacements", "allow_community_extensions", "allow_unredacted_secrets"):
        con.execute(f"SET {setting} = false")


def open_sandboxed(request: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Open the file so that user SQL can reach its tables and nothing else on disk."""
    if request.get("lake_setup"):
        return open_lake_sandboxed(request)
    path, workdir = Path(request["path"]), Path(request["workdir"])
    links = _link_database(path, workdir)
    config: dict[str, Any] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "threads": 1,
        "memory_limit": request["memory_limit"],
        # Without the link the database file would be readable, so local files are switched off
        # altogether, and with them spilling to disk.
        "temp_directory": str(workdir) if links else "",
        "max_temp_directory_size": request["max_temp_size"],
    }
    try:
        con = _connect_with_retry(links[0] if links else path, path, config, request["busy_retry_s"])
    finally:
        for link in links:
            link.unlink(missing_ok=True)
    # Again after opening: DuckDB 1.5.5 reports a max_temp_directory_size given at connect time but
    # does not enforce it (measured: 160 MB spilled under a 10 MB cap); a SET is enforced.
    con.execute("SET max_temp_directory_size = ?", [request["max_temp_size"]])
    # Set after opening: DuckDB refuses a temp directory once external access is off, and
    # disabling the local file system first would stop the database itself from opening.
    _close_side_doors(con)
    con.execute("SET enable_external_access = false")
    if not links:
        con.execute("SET disabled_filesystems = 'LocalFileSystem'")
    con.execute("SET lock_configuration = true")
    return con


def _statement_kind(statement: Any, sql: str) -> str:
    """The type of the one statement in `sql`, named by its leading keyword where DuckDB rewrites
    it into a SELECT.

    DuckDB 1.5 reports `PRAGMA name` as a SELECT (2.0 says PRAGMA) and hands back the expanded
    query; PRAGMAs set options and profiling outputs, so they keep their own name and are refused
    like other non-queries."""
    kind = statement.type.name
    if kind == "SELECT":
        leading = re.match(r"([A-Za-z_]+)", _strip_leading_comments(sql))
        if leading and leading.group(1).upper() == "PRAGMA":
            return "PRAGMA"
    return kind


def _strip_leading_comments(sql: str) -> str:
    while True:
        sql = sql.lstrip()
        if sql.startswith("--"):
            sql = sql.partition("\n")[2]
        elif sql.startswith("/*") and "*/" in sql:
            sql = sql.split("*/", 1)[1]
        else:
            return sql


def check_one_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Enforce what the parent's courtesy check only explains: exactly one SELECT (SHOW, DESCRIBE,
    SUMMARIZE included), so nothing can write a file, not even into the temp directory."""
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        raise Refusal("refused", f"The SQL box runs exactly one statement; found {len(statements)}. "
                                 "Remove the extra ones.")
    kind = _statement_kind(statements[0], sql)
    if kind == "SELECT":
        return
    if kind in _FILE_STATEMENTS:
        raise Refusal("refused", "The SQL box cannot read or write files or the network; query the synced "
                                 f"tables instead. ({kind} statements are not allowed.)")
    if kind in _SETTING_STATEMENTS:
        raise Refusal("refused", "The SQL box cannot change DuckDB settings.")
    raise Refusal("refused", f"The SQL box is read-only: {kind} statements are not allowed. Use SELECT "
                             "(or SUMMARIZE/DESCRIBE); tables change only through syncs.")


def _rows_within(batch: pa.RecordBatch, budget: int) -> int:
    """How many leading rows of `batch` fit in `budget` bytes (row sizes vary, so bisect)."""
    low, high = 0, batch.num_rows
    while low < high:
        middle = (low + high + 1) // 2
        if batch.slice(0, middle).nbytes <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def collect(reader: pa.RecordBatchReader, max_rows: int, max_bytes: int) -> tuple[pa.Table, str | None]:
    """The leading part of the result within both caps, and which cap cut it ("rows", "bytes" or None)."""
    batches: list[pa.RecordBatch] = []
    rows = size = 0
    cut: str | None = None
    for batch in reader:
        if rows + batch.num_rows > max_rows:
            batch, cut = batch.slice(0, max_rows - rows), "rows"
        if size + batch.nbytes > max_bytes:
            batch, cut = batch.slice(0, _rows_within(batch, max_bytes - size)), "bytes"
            if rows == 0 and batch.num_rows == 0:
                raise Refusal("too_big", f"A single row of the result is larger than the SQL box's limit of "
                                         f"{_mb(max_bytes)}; select fewer or shorter columns (for example "
                                         "left(col, 1000)).")
        batches.append(batch)
        rows, size = rows + batch.num_rows, size + batch.nbytes
        if cut:
            break
    return pa.Table.from_batches(batches, schema=reader.schema), cut


def check_reach(con: duckdb.DuckDBPyConnection, sql: str, functions: Functions) -> None:
    """Refuse a query that reaches anything but the synced tables (see `sfduck_core.sql_policy`)."""
    try:
        check_query(con, sql, functions, target_tables(con))
    except PolicyError as exc:
        raise Refusal("refused", str(exc)) from None


def _run(request: dict[str, Any]) -> tuple[pa.Table, str | None]:
    con = open_sandboxed(request)
    try:
        check_one_select(con, request["sql"])
        check_reach(con, request["sql"], Functions.from_json(request["functions"]))
        reader = con.sql(request["sql"]).to_arrow_reader(BATCH_ROWS)  # streams; execute() would materialize all rows
        return collect(reader, request["max_rows"], request["max_bytes"])
    finally:
        con.close()


def _header(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8") + b"\n"


def main() -> None:
    """Entry point of the sandboxed process: JSON request on stdin, header line + Arrow IPC on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    limit_memory(request["max_memory_bytes"])
    try:
        table, cut = _run(request)
    except Refusal as refusal:
        out.write(_header({"ok": False, "kind": refusal.kind, "message": refusal.message}))
        out.flush()
        return
    except (duckdb.Error, MemoryError) as exc:
        kind, message = _describe_error(exc, request)
        out.write(_header({"ok": False, "kind": kind, "message": message}))
        out.flush()
        return
    out.write(_header({"ok": True, "cut": cut, "rows": table.num_rows}))
    with pa.ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    out.flush()


if __name__ == "__main__":
    main()
