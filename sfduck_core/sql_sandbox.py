"""The child process behind the dashboard's read-only SQL box (see `sfduck_core.preview`).

Run as `python -m sfduck_core.sql_sandbox`: reads one JSON request on stdin, opens the DuckDB file
read-only with external access disabled and the configuration locked, runs the query, and writes a
JSON header line followed by the (row-bounded) result as an Arrow IPC stream on stdout. It imports
only duckdb and pyarrow so that it starts quickly; the parent kills it at the time limit.
"""

from __future__ import annotations

import json
import sys
import time

import duckdb
import pyarrow as pa


def _describe_error(exc: Exception) -> tuple[str, str]:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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


def main() -> None:
    """Entry point of the sandboxed process: JSON request on stdin, header line + Arrow IPC on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer

    def fail(kind: str, message: str) -> None:
        out.write(json.dumps({"ok": False, "kind": kind, "message": message}).encode("utf-8") + b"\n")
        out.flush()

    config = {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "threads": 1,
        "memory_limit": request["memory_limit"],
        "lock_configuration": True,
    }
    deadline = time.monotonic() + request["busy_retry_s"]
    while True:
        try:
            con = duckdb.connect(request["path"], read_only=True, config=config)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                fail("busy", "The database is busy: a sync is loading data right now. Try again in a few seconds.")
                return
            time.sleep(0.1)
    try:
        reader = con.execute(request["sql"]).to_arrow_reader(1024)
        batches: list[pa.RecordBatch] = []
        kept = 0
        truncated = False
        for batch in reader:
            if kept + batch.num_rows > request["max_rows"]:
                batches.append(batch.slice(0, request["max_rows"] - kept))
                truncated = True
                break
            batches.append(batch)
            kept += batch.num_rows
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.Error as exc:
        fail(*_describe_error(exc))
        return
    finally:
        con.close()
    out.write(json.dumps({"ok": True, "truncated": truncated, "rows": table.num_rows}).encode("utf-8") + b"\n")
    with pa.ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    out.flush()


if __name__ == "__main__":
    main()
