"""Read-only views that join what Snowflake reports with what sfduck has recorded.

The dashboard pages only render; the joining and arithmetic live here so they are testable
without Streamlit and reusable by other front ends. Nothing here writes anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sfduck_core.humanize import human_bytes as human_bytes  # where pages and doctor find it
from sfduck_core.source import TableDescription, TableInfo
from sfduck_core.store import Registration


@dataclass(frozen=True)
class SyncEstimate:
    """What a full sync of a table would move, from Snowflake's own statistics."""

    rows: int | None
    bytes: int | None  # Snowflake's compressed storage size: close to the Parquet bytes unloaded
    columns: int

    def describe(self) -> str:
        rows = "unknown rows" if self.rows is None else f"{self.rows:,} rows"
        size = "unknown size" if self.bytes is None else human_bytes(self.bytes)
        return f"{rows}, about {size} compressed, {self.columns} columns"


def tables_overview(tables: list[TableInfo], registrations: list[Registration], schema: str) -> pd.DataFrame:
    """The schema's tables with Snowflake's statistics and whether sfduck has them registered."""
    active = {r.table_name for r in registrations if r.schema_name == schema and r.status == "active"}
    rows = [{
        "table": info.table_name,
        "type": info.table_type,
        "rows": info.row_count,
        "size": None if info.size_bytes is None else human_bytes(info.size_bytes),
        "last_modified": info.last_modified,
        "registered": info.table_name in active,
    } for info in tables]
    return pd.DataFrame(rows, columns=["table", "type", "rows", "size", "last_modified", "registered"])


def search_tables(frame: pd.DataFrame, text: str) -> pd.DataFrame:
    """Case-insensitive substring match on the table name."""
    text = (text or "").strip()
    if not text:
        return frame
    return frame[frame["table"].str.contains(text, case=False, regex=False)]


def columns_overview(desc: TableDescription) -> pd.DataFrame:
    """One row per column: Snowflake type, the DuckDB type it becomes, primary-key membership."""
    nullable = {c.name: c.nullable for c in desc.columns}
    rows = [{
        "column": plan.name,
        "snowflake_type": str(plan.snowflake_type),
        "duckdb_type": plan.duckdb_type,
        "nullable": nullable.get(plan.name, True),
        "primary_key": plan.name in desc.primary_key,
        "type_mapped": plan.mapping.known,
    } for plan in desc.plans]
    return pd.DataFrame(rows, columns=["column", "snowflake_type", "duckdb_type", "nullable", "primary_key",
                                       "type_mapped"])


def full_sync_estimate(info: TableInfo | None, desc: TableDescription) -> SyncEstimate:
    return SyncEstimate(info.row_count if info else None, info.size_bytes if info else None, len(desc.columns))


def find_table(tables: list[TableInfo], name: str) -> TableInfo | None:
    return next((t for t in tables if t.table_name == name), None)


JOB_COLUMNS = ["sync_id", "table", "status", "strategy", "transport", "trigger", "started_by", "created_at",
               "started_at", "completed_at", "duration_s", "rows", "bytes", "rows_per_s", "error_message"]


def _parse_ts(value: Any) -> pd.Timestamp | None:
    if value in (None, ""):
        return None
    return pd.Timestamp(value.isoformat() if isinstance(value, dt.datetime) else value)


def jobs_frame(jobs: list[dict[str, Any]]) -> pd.DataFrame:
    """Store.history() as a table with duration, rows and throughput per sync, for charts."""
    rows = []
    for job in jobs:
        stats = job.get("stats") or {}
        started, completed = _parse_ts(job.get("started_at")), _parse_ts(job.get("completed_at"))
        duration = stats.get("duration_s")
        if duration is None and started is not None and completed is not None:
            duration = (completed - started).total_seconds()
        rows_moved = stats.get("rows_processed")
        rows.append({
            "sync_id": job["sync_id"],
            "table": f"{job['schema_name']}.{job['table_name']}",
            "status": job["status"],
            "strategy": job.get("strategy"),
            "transport": job.get("transport"),
            "trigger": job.get("trigger"),
            "started_by": job.get("started_by"),
            "created_at": _parse_ts(job.get("created_at")),
            "started_at": started,
            "completed_at": completed,
            "duration_s": duration,
            "rows": rows_moved,
            "bytes": stats.get("bytes_transferred"),
            "rows_per_s": (rows_moved / duration) if rows_moved is not None and duration else None,
            "error_message": job.get("error_message"),
        })
    frame = pd.DataFrame(rows, columns=JOB_COLUMNS)
    for column in ("created_at", "started_at", "completed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("duration_s", "rows", "bytes", "rows_per_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
