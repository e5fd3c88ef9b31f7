"""What the History page charts and shows, computed in the metadata database per calendar day (or week, month).

Buckets are dates, not timestamps: a one-day range is one bar labelled with its day, never an
axis of hours with ticks like `23:59:59.9995`. Counts come per status (one colour each on every
chart), and the aggregation runs in the metadata database, so a year of schedules (500,000 jobs) costs the page a
few hundred milliseconds. A job's detail is a list of labelled fields and a timeline of its phases.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sfduck_core.catalog import jobs_frame
from sfduck_core.engine import TRIGGERS
from sfduck_core.errors import SfduckError
from sfduck_core.humanize import exact_time, human_bytes, human_count, human_duration
from sfduck_core.store import JobQuery, Store

CHART_BUCKETS = ("day", "week", "month")
SUMMARY_COLUMNS = ["bucket", "status", "jobs", "rows", "bytes", "avg_duration_s", "max_duration_s"]


def chart_bucket(since: dt.date, until: dt.date) -> str:
    """Days up to half a year, then weeks, then months: a chart keeps a readable number of bars."""
    span = (until - since).days
    return "day" if span <= 183 else "week" if span <= 3 * 366 else "month"


def history_facets(store: Store) -> dict[str, Any]:
    """What the History filters offer and the first job's time, without scanning the jobs for
    names: tables come from the registrations (every job's table is one, active or not), triggers
    are the fixed set, and only the users need a pass over one column."""
    found = store.metadata.reports.history_facets()
    first = found["first_created"]
    return {"tables": found["tables"] if first is not None else [], "triggers": list(TRIGGERS),
            "users": found["users"], "first_created": first}


def daily_summary(store: Store, query: JobQuery, bucket: str = "day") -> pd.DataFrame:
    """Per bucket (a date, UTC) and status: jobs, rows, bytes, average and longest duration."""
    if bucket not in CHART_BUCKETS:
        raise SfduckError(f"Unknown time bucket {bucket!r}; use one of {', '.join(CHART_BUCKETS)}.")
    rows = store.metadata.reports.daily_summary(query, bucket)
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    frame["bucket"] = pd.to_datetime(frame["bucket"])
    for column in SUMMARY_COLUMNS[2:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def per_bucket(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per bucket: rows and bytes of the syncs that moved data, duration over all jobs."""
    if summary.empty:
        return pd.DataFrame(columns=["bucket", "jobs", "rows", "bytes", "avg_duration_s", "max_duration_s"])
    weighted = summary.assign(total_s=summary["avg_duration_s"] * summary["jobs"])
    grouped = weighted.groupby("bucket", as_index=False).agg(
        jobs=("jobs", "sum"), rows=("rows", "sum"), bytes=("bytes", "sum"), total_s=("total_s", "sum"),
        max_duration_s=("max_duration_s", "max"))
    grouped["avg_duration_s"] = grouped["total_s"] / grouped["jobs"]
    return grouped.drop(columns=["total_s"])


@dataclass(frozen=True)
class DateAxis:
    """A date axis for plotly: exactly the chosen range's buckets, ticks never closer than one
    bucket, a label per bucket centred under its bar when every bucket has a tick."""

    range: tuple[str, str]
    tick0: str
    dtick: int | str  # milliseconds (days, weeks) or "M<n>" (months)
    tickformat: str
    period_labels: bool  # one tick per bucket: label the bucket (centred), not the instant

    def as_layout(self) -> dict[str, Any]:
        return {"type": "date", "range": list(self.range), "tick0": self.tick0, "dtick": self.dtick,
                "tickformat": self.tickformat, "ticklabelmode": "period" if self.period_labels else "instant",
                "showgrid": False}


DAY_MS = 86_400_000
MAX_TICKS = 12


def bucket_start(day: dt.date, bucket: str) -> dt.date:
    if bucket == "week":
        return day - dt.timedelta(days=day.weekday())  # DuckDB's weeks start on Monday (ISO)
    if bucket == "month":
        return day.replace(day=1)
    return day


def next_bucket(start: dt.date, bucket: str) -> dt.date:
    if bucket == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + dt.timedelta(days=7 if bucket == "week" else 1)


def date_axis(since: dt.date, until: dt.date, bucket: str, max_ticks: int = MAX_TICKS) -> DateAxis:
    """From the start of `since`'s bucket to the end of `until`'s; a tick per bucket while at most
    MAX_TICKS fit, else every few buckets (whole days, whole weeks, whole months)."""
    first, last = bucket_start(since, bucket), bucket_start(until, bucket)
    end = next_bucket(last, bucket)
    if bucket == "month":
        count = (last.year - first.year) * 12 + last.month - first.month + 1
        step = max(1, math.ceil(count / max_ticks))
        dtick: int | str = f"M{step}"
        fmt = "%b %Y"
    else:
        size = 7 if bucket == "week" else 1
        count = ((end - first).days) // size
        step = max(1, math.ceil(count / max_ticks))
        dtick = step * size * DAY_MS
        fmt = "%b %d" if since.year == until.year else "%b %d, %Y"
    return DateAxis((first.isoformat(), end.isoformat()), first.isoformat(), dtick, fmt, step == 1)


def bar_middles(buckets: pd.Series, bucket: str) -> tuple[pd.Series, float]:
    """Where to draw each bucket's bar (its middle) and how wide (80 % of a bucket), in ms."""
    days = {"day": 1.0, "week": 7.0, "month": 30.4}[bucket]
    half = pd.Timedelta(days=days / 2) if bucket != "month" else None
    if half is None:
        ends = buckets + pd.offsets.MonthBegin(1)
        middles = buckets + (ends - buckets) / 2
    else:
        middles = buckets + half
    return middles, days * DAY_MS * 0.8


# --- one job ---------------------------------------------------------------------------------

PHASES = (("unload", "unload_s"), ("query", "query_s"), ("download", "download_s"), ("load", "load_s"))


def phase_timeline(job: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(phase, start_s, seconds) in the order they ran: unload (or the arrow query), download, load,
    then merge: what remains of the duration (the merge or swap and the commit)."""
    stats = job.get("stats") or {}
    out: list[tuple[str, float, float]] = []
    at = 0.0
    for name, key in PHASES:
        seconds = stats.get(key)
        if isinstance(seconds, int | float) and seconds > 0:
            out.append((name, at, float(seconds)))
            at += float(seconds)
    total = stats.get("duration_s")
    if isinstance(total, int | float) and out and total - at > 0.0005:
        out.append(("merge" if job.get("strategy") == "incremental" else "swap", at, float(total) - at))
    return out


def _when(value: Any) -> str | None:
    if not value:
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return exact_time(moment)


def job_fields(job: dict[str, Any]) -> list[tuple[str, str]]:
    """A job's record as labelled, readable fields (what it was, what it moved, how long it took);
    fields the run did not record are left out."""
    stats = job.get("stats") or {}
    fields: list[tuple[str, Any]] = [
        ("Table", f"{job['schema_name']}.{job['table_name']}"),
        ("Status", job.get("status")),
        ("Strategy", job.get("strategy")),
        ("Transport", stats.get("transport") or job.get("transport")),
        ("Started from", job.get("trigger")),
        ("Started by", job.get("started_by")),
        ("Queued at", _when(job.get("created_at"))),
        ("Started at", _when(job.get("started_at"))),
        ("Ended at", _when(job.get("completed_at"))),
        ("Duration", human_duration(stats["duration_s"]) if stats.get("duration_s") is not None else None),
        ("Rows processed", human_count(stats["rows_processed"]) if stats.get("rows_processed") is not None else None),
        ("Rows in Snowflake", human_count(stats["total_rows"]) if stats.get("total_rows") is not None else None),
    ]
    for key, label in (("rows_inserted", "Rows inserted"), ("rows_updated", "Rows updated"),
                       ("rows_deleted", "Rows deleted"), ("rows_unchanged", "Rows unchanged"),
                       ("late_rows", "Late rows caught")):
        if stats.get(key) is not None:
            fields.append((label, human_count(stats[key])))
    if stats.get("bytes_transferred") is not None:
        fields.append(("Data transferred", human_bytes(stats["bytes_transferred"])))
    if stats.get("files") is not None:
        fields.append(("Files", human_count(stats["files"])))
    fields += [("Row filter", job.get("filter") or stats.get("filter")),
               ("Incremental key", stats.get("incremental_key")),
               ("Watermark before", _watermark(stats.get("watermark_before"))),
               ("Watermark after", _watermark(stats.get("watermark_after"))),
               ("Transport note", stats.get("fallback_reason")),
               ("Lake snapshot", str(stats["snapshot_id"]) if stats.get("snapshot_id") is not None else None),
               ("Error", job.get("error_message")),
               ("Sync id", job.get("sync_id"))]
    return [(label, str(value)) for label, value in fields if value not in (None, "")]


def _watermark(value: Any) -> str | None:
    """`UPDATED_AT = 2026-12-07 20:34:05.369854`: the key and its value (types are the column's business)."""
    if not value:
        return None
    if isinstance(value, dict) and "column" in value and "value" in value:
        return f"{value['column']} = {value['value']}"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items())
    return str(value)


def jobs_table(jobs: list[dict[str, Any]]) -> pd.DataFrame:
    """A page of jobs as the dashboard lists them: sizes and durations in their units, an empty
    error where there was none."""
    frame = jobs_frame(jobs)
    frame["data"] = ["–" if pd.isna(b) else human_bytes(b) for b in frame["bytes"]]
    frame["duration"] = ["–" if pd.isna(d) else human_duration(d) for d in frame["duration_s"]]
    frame["error_message"] = frame["error_message"].fillna("")  # no error: an empty cell, not `None`
    return frame[["created_at", "table", "status", "trigger", "started_by", "rows", "data", "duration",
                  "error_message", "sync_id"]]
