"""Sync history: rows, duration, throughput and failures over time, and each job's full record.

Charts come from per-bucket aggregates computed in DuckDB and the job list is paged, so a year of
schedules (a million jobs) costs the page what a day does.
"""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("history")

import datetime as dt

import plotly.express as px
import streamlit as st

from sfduck_core.catalog import jobs_frame, summary_bucket, summary_frame
from sfduck_core.store import BUCKETS, JobQuery
from sfduck_ui.layout import load_or_stop

PAGE_SIZE = 50
ANYONE = "(anyone)"

st.title("History")
store = ctx.engine.store
facets = load_or_stop("reading the sync history", store.job_facets)
if not facets["tables"]:
    st.info("No sync has run yet. Syncs started from the Sync page, the API, schedules or the command line "
            "appear here.")
    st.stop()

today = dt.datetime.now(dt.UTC).date()
first_day = facets["first_created"].astimezone(dt.UTC).date()
table_col, range_col = st.columns([2, 1])
tables = table_col.multiselect("Tables", facets["tables"], placeholder="all tables")
picked = range_col.date_input("Time range (UTC)", value=(first_day, today), max_value=today)
since, until = (picked if isinstance(picked, tuple) and len(picked) == 2 else (first_day, today))
trigger_col, user_col, bucket_col = st.columns(3)
trigger = trigger_col.selectbox("Started from", [ANYONE, *facets["triggers"]])
user = user_col.selectbox("Started by", [ANYONE, *facets["users"]])
auto_bucket = summary_bucket(since, until)
bucket = bucket_col.selectbox("Chart per", BUCKETS, index=BUCKETS.index(auto_bucket))
query = JobQuery(tables=tuple(tables), trigger=None if trigger == ANYONE else trigger,
                 started_by=None if user == ANYONE else user,
                 since=dt.datetime.combine(since, dt.time(), dt.UTC),
                 until=dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC))
summary = summary_frame(load_or_stop("summarizing the sync history", store.job_summary, query, bucket))
if summary.empty:
    st.info("No sync matches these filters; widen the time range or pick other tables.")
    st.stop()

totals = st.columns(5)
totals[0].metric("Syncs", f"{int(summary['jobs'].sum()):,}")
totals[1].metric("Completed", f"{int(summary['completed'].sum()):,}")
totals[2].metric("Skipped (unchanged)", f"{int(summary['skipped'].sum()):,}")
totals[3].metric("Failed", f"{int(summary['failed'].sum()):,}")
totals[4].metric("Rows synced", f"{int(summary['rows'].fillna(0).sum()):,}")

rows_chart = px.bar(summary, x="bucket", y="rows", color="table", title=f"Rows synced per {bucket}",
                    hover_data=["jobs", "completed", "skipped", "failed"])
rows_chart.update_yaxes(rangemode="tozero")
st.plotly_chart(rows_chart, width="stretch", key="rows_chart")
left, right = st.columns(2)
left.plotly_chart(px.line(summary, x="bucket", y="avg_duration_s", color="table", markers=True,
                          title=f"Average duration per {bucket} (s)", hover_data=["max_duration_s", "jobs"]),
                  width="stretch", key="duration_chart")
right.plotly_chart(px.line(summary.dropna(subset=["rows_per_s"]), x="bucket", y="rows_per_s", color="table",
                           markers=True, title=f"Throughput per {bucket} (rows/s)"),
                   width="stretch", key="throughput_chart")
failures = summary[summary["failed"] > 0]
if failures.empty:
    st.caption("No failed syncs in this range.")
else:
    st.plotly_chart(px.bar(failures, x="bucket", y="failed", color="table", title=f"Failures per {bucket}"),
                    width="stretch", key="failures_chart")

st.subheader("Jobs")
total = int(summary["jobs"].sum())
pages = max(1, -(-total // PAGE_SIZE))
page = st.number_input(f"Page (of {pages}, {PAGE_SIZE} jobs each, newest first)", min_value=1, max_value=pages,
                       value=1, step=1) if pages > 1 else 1
jobs, _ = load_or_stop("reading the jobs", store.find_jobs, query, PAGE_SIZE, (int(page) - 1) * PAGE_SIZE)
shown = jobs_frame(jobs)
st.dataframe(shown, hide_index=True, width="stretch",
             column_config={"rows": st.column_config.NumberColumn(format="localized"),
                            "rows_per_s": st.column_config.NumberColumn("rows/s", format="%.0f"),
                            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.2f"),
                            "trigger": st.column_config.TextColumn("started from"),
                            "started_by": st.column_config.TextColumn("started by")})

st.subheader("Job detail")
labels = {f"{r.created_at:%Y-%m-%d %H:%M:%S} · {r.table} · {r.status} · {r.sync_id[:8]}": r.sync_id
          for r in shown.itertuples()}
chosen = st.selectbox("Job", list(labels))
job = load_or_stop("reading the job", store.get_job, labels[chosen]) if chosen else None
if job and job.get("error_message"):
    st.error(f"This sync failed: {job['error_message']}")
st.json(job or {}, expanded=2)
