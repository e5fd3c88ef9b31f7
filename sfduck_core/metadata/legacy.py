"""What the releases before the metadata database kept in the data target itself: the schema
`sfduck_meta` of a DuckDB file or a DuckLake (the last of them, commit 7b69258, wrote schema
version 9). The first start of a release with a metadata database reads it here and copies it
there; nothing here writes to the metadata database, and nothing here changes the old rows.

Rows come back as plain dicts keyed by the legacy column names (the metadata database keeps the
same table and column names), with every column of the last legacy version present, whatever
version the target was left at: a column added by a later migration gets the value that migration
gave existing rows, a table created by a later one is empty. Values are plain Python: lists for
VARCHAR[] columns, parsed JSON for the JSON ones, timezone-aware UTC datetimes for TIMESTAMPTZ.

A target whose metadata was copied is marked (`mark_migrated`: a row in `sfduck_meta.migrated_to`),
and reads as having none, so the copy is made once; the old rows stay, for a look back.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from sfduck_core.sqlident import qualified

LEGACY_SCHEMA = "sfduck_meta"
MARK_TABLE = "migrated_to"
LAST_LEGACY_VERSION = 9

Row = dict[str, Any]

# Every table and column of sfduck_meta at version 9, tables in an order a writer can insert them
# (a registration before what refers to it). schema_version is not copied: the metadata database
# has migrations of its own.
LEGACY_TABLES: dict[str, tuple[str, ...]] = {
    "data_source": ("label", "claimed_at"),
    "allowed_tables": ("table_id", "schema_name", "table_name", "status", "incremental_key", "primary_key",
                       "detect_deletes", "include_columns", "exclude_columns", "created_at", "updated_at"),
    "schedules": ("table_id", "cron", "timezone", "interval_s", "strategy", "enabled", "consecutive_failures",
                  "paused_reason", "next_run_at", "last_run_at", "last_sync_id", "last_outcome", "updated_by",
                  "updated_at"),
    "sync_jobs": ("sync_id", "table_id", "schema_name", "table_name", "strategy", "transport", "status",
                  "created_at", "started_at", "completed_at", "error_message", "stats", "filter", "pid", "host",
                  "process_started", "cancel_requested", "trigger", "started_by"),
    "table_sync_status": ("table_id", "schema_name", "table_name", "last_sync_id", "last_status", "last_sync_at",
                          "last_success_sync_id", "last_success_at", "row_count", "size_bytes", "watermark",
                          "source_row_count", "source_last_modified", "columns", "filter"),
    "audit_log": ("changed_at", "actor", "action", "table_id", "schema_name", "table_name", "details"),
}
# How each table's rows are ordered: by creation where there is such a column (the audit log has no key)
_ORDER_BY = {
    "data_source": ("claimed_at",),
    "allowed_tables": ("created_at", "table_id"),
    "schedules": ("table_id",),
    "sync_jobs": ("created_at", "sync_id"),
    "table_sync_status": ("table_id",),
    "audit_log": ("changed_at",),
}
_LIST_COLUMNS = {("allowed_tables", c) for c in ("primary_key", "include_columns", "exclude_columns")}
_JSON_COLUMNS = {("sync_jobs", "stats"), ("table_sync_status", "watermark"), ("table_sync_status", "columns"),
                 ("audit_log", "details")}
# What a column added by a later migration holds in rows written before it (migrations 3 and 4)
_ADDED_LATER: dict[tuple[str, str], Any] = {("sync_jobs", "cancel_requested"): False,
                                            ("sync_jobs", "trigger"): None, ("sync_jobs", "started_by"): None}


@dataclass(frozen=True)
class LegacyMetadata:
    """Every row of sfduck_meta, one list of dicts (keyed by LEGACY_TABLES' columns) per table."""

    schema_version: int  # the legacy version the target was left at (LAST_LEGACY_VERSION: the newest)
    data_source: list[Row]
    allowed_tables: list[Row]
    schedules: list[Row]
    sync_jobs: list[Row]
    table_sync_status: list[Row]
    audit_log: list[Row]

    def tables(self) -> dict[str, list[Row]]:
        """Table name -> rows, in LEGACY_TABLES' order (the order to insert them in)."""
        return {name: getattr(self, name) for name in LEGACY_TABLES}


def read_legacy_metadata(con: duckdb.DuckDBPyConnection) -> LegacyMetadata | None:
    """The sfduck_meta of the connection's default database (a DuckDB file, or a lake attached
    and USEd as sfduck's own connections do); None when it has none (a fresh target, or one
    written only by a newer release) or when it was already copied (see `mark_migrated`).

    Read it with no sfduck sync running (at the upgrade, before the server starts syncing): the
    tables are read one after the other."""
    present = _legacy_tables(con)
    if "allowed_tables" not in present or migrated_to(con) is not None:
        return None
    version = 0
    if "schema_version" in present:
        version = int(con.execute(f"SELECT coalesce(max(version), 0) FROM {_table(con, 'schema_version')}"
                                  ).fetchone()[0])
    rows = {name: _read_table(con, name) if name in present else [] for name in LEGACY_TABLES}
    if version < LAST_LEGACY_VERSION:
        _name_skipped_jobs(rows["sync_jobs"], rows["table_sync_status"])
    return LegacyMetadata(schema_version=version, **rows)


def mark_migrated(con: duckdb.DuckDBPyConnection, where: str) -> None:
    """Record that this target's sfduck_meta was copied to `where` (a description of the metadata
    database, never a password: pass a redacted URL), so `read_legacy_metadata` reads None from now
    on. The legacy rows are left as they were."""
    mark = _table(con, MARK_TABLE)
    con.execute("BEGIN")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {qualified(_database(con), LEGACY_SCHEMA)}")
        con.execute(f"CREATE TABLE IF NOT EXISTS {mark} (metadata_database VARCHAR NOT NULL, "
                    "migrated_at TIMESTAMPTZ NOT NULL)")
        con.execute(f"INSERT INTO {mark} VALUES (?, ?)", [where, dt.datetime.now(dt.UTC)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def migrated_to(con: duckdb.DuckDBPyConnection) -> str | None:
    """Where this target's sfduck_meta was copied to (the latest mark), or None if it never was."""
    if MARK_TABLE not in _legacy_tables(con):
        return None
    row = con.execute(f"SELECT metadata_database FROM {_table(con, MARK_TABLE)} "
                      "ORDER BY migrated_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def _database(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute("SELECT current_database()").fetchone()[0])


def _table(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return qualified(_database(con), LEGACY_SCHEMA, name)


def _legacy_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                       "AND schema_name = ?", [LEGACY_SCHEMA]).fetchall()
    return {r[0] for r in rows}


def _read_table(con: duckdb.DuckDBPyConnection, name: str) -> list[Row]:
    cur = con.execute(f"SELECT * FROM {_table(con, name)}")
    found = [d[0] for d in cur.description]
    rows = []
    for values in (dict(zip(found, row, strict=True)) for row in cur.fetchall()):
        # a column missing from `values`: the target predates the migration that added it
        rows.append({column: _plain(name, column, values[column]) if column in values
                     else _ADDED_LATER[(name, column)] for column in LEGACY_TABLES[name]})
    order = _ORDER_BY[name]
    rows.sort(key=lambda r: tuple((r[c] is None, r[c] if r[c] is not None else 0) for c in order))
    return rows


def _plain(table: str, column: str, value: Any) -> Any:
    if (table, column) in _LIST_COLUMNS:
        return list(value or [])
    if (table, column) in _JSON_COLUMNS:
        return json.loads(value) if isinstance(value, str | bytes) else value
    if (table, column) == ("sync_jobs", "cancel_requested"):
        return bool(value)  # NULL (a row older than the column, in some targets) is "not requested"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value


def _name_skipped_jobs(jobs: list[Row], statuses: list[Row]) -> None:
    """Migration 9 in memory, for a target left before it: a sync that found nothing changed was
    recorded `completed` with `skipped: true` in its stats; it is `skipped` now (and so is a table
    status that names it)."""
    skipped = set()
    for index, job in enumerate(jobs):
        flag = job["stats"].get("skipped") if isinstance(job["stats"], dict) else None
        if job["status"] == "completed" and (flag is True or flag == "true"):
            jobs[index] = {**job, "status": "skipped"}
            skipped.add(job["sync_id"])
    for index, status in enumerate(statuses):
        if status["last_status"] == "completed" and status["last_sync_id"] in skipped:
            statuses[index] = {**status, "last_status": "skipped"}
