"""A long sync history in seconds: registered tables and `count` finished jobs spread over the
last `days` days, as schedules would leave them (mostly completed, some skipped, failed and
cancelled), for the browser test's ninety days and the server-scale bench's year.

Registrations go through the core (`Store.upsert_registration`); the jobs are inserted in bulk
into the metadata database, because the core only records jobs as they happen (stamped now), and
a year of them one by one would take hours.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from sfduck_core.metadata.tables import sync_jobs, table_sync_status
from sfduck_core.store import Store

SEED_SCHEMA = "WORKSPACE_833213390"
CHUNK = 20_000


def _job(i: int, reg: Any, schema: str, created: dt.datetime) -> dict[str, Any]:
    failed, cancelled = i % 50 == 3, i % 97 == 5 and i % 50 != 3
    skipped = i % 7 == 1 and not failed and not cancelled
    status = "failed" if failed else "cancelled" if cancelled else "skipped" if skipped else "completed"
    rows = (i * 7919) % 100000
    stats = ({"skipped": True, "rows_processed": 0, "duration_s": 0.4} if skipped else
             {"rows_processed": rows, "duration_s": 5 + (i % 40), "bytes_transferred": rows * 180,
              "unload_s": 2 + (i % 10), "download_s": 1 + (i % 5), "load_s": 1 + (i % 7)})
    return {"sync_id": str(uuid.uuid4()), "table_id": reg.table_id, "schema_name": schema,
            "table_name": reg.table_name, "strategy": "incremental", "transport": "stage", "status": status,
            "created_at": created, "started_at": created, "completed_at": created + dt.timedelta(seconds=5 + i % 40),
            "error_message": ("Snowflake said: warehouse SEED_WH is suspended." if failed
                              else "Cancelled by admin." if cancelled else None),
            "stats": stats, "filter": None, "pid": None, "host": None, "process_started": None,
            "cancel_requested": False, "trigger": "api" if i % 3 == 0 else "schedule", "started_by": "scheduler"}


def seed_history(db: Path, count: int, days: int, tables: int = 30, schema: str = SEED_SCHEMA,
                 metadata_url: str | None = None) -> list[str]:
    """Returns the seeded table names (SEEDED_0 ...); each table's last job sets its board status."""
    store = Store(db, metadata_url=metadata_url)
    regs = [store.upsert_registration(schema, f"SEEDED_{i}", incremental_key=None, primary_key=(),
                                      detect_deletes=False, include_columns=(), exclude_columns=())
            for i in range(tables)]
    span_s = days * 86400
    now = dt.datetime.now(dt.UTC)
    last: dict[str, dict[str, Any]] = {}
    last_success: dict[str, dict[str, Any]] = {}
    with store.metadata.write() as conn:
        for start in range(0, count, CHUNK):
            chunk = []
            for i in range(start, min(count, start + CHUNK)):
                job = _job(i, regs[i % tables], schema, now - dt.timedelta(seconds=60 + i * span_s // count))
                chunk.append(job)
                for seen, keep in ((last, True), (last_success, job["status"] == "completed")):
                    if keep and (job["table_id"] not in seen or seen[job["table_id"]]["created_at"] < job["created_at"]):
                        seen[job["table_id"]] = job
            conn.execute(sync_jobs.insert(), chunk)
        statuses = []
        for reg in regs:
            job, ok = last.get(reg.table_id), last_success.get(reg.table_id)
            if job is None:
                continue
            statuses.append({"table_id": reg.table_id, "schema_name": schema, "table_name": reg.table_name,
                             "last_sync_id": job["sync_id"], "last_status": job["status"],
                             "last_sync_at": job["completed_at"],
                             "last_success_sync_id": ok["sync_id"] if ok else None,
                             "last_success_at": ok["completed_at"] if ok else None,
                             "row_count": 100000 + hash(reg.table_id) % 900000})
        if statuses:
            conn.execute(table_sync_status.insert(), statuses)
    return [r.table_name for r in regs]
