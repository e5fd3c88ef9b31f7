"""Sync history: syncs per day by status, rows, durations, and each job's fields and phases.

Charts come from per-day aggregates computed in DuckDB and the job list is paged, so a year of
schedules (500,000 jobs) costs the page what a day does. Every chart colours by status only, with
the colours every badge uses (sfduck_ui.status).
"""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("history")

import datetime as dt

import streamlit as st

from sfduck_core.history import CHART_BUCKETS, chart_bucket, daily_summary, history_facets
from sfduck_core.humanize import human_bytes
from sfduck_core.store import JobQuery
from sfduck_ui import charts
from sfduck_ui.jobs import show_jobs
from sfduck_ui.layout import load_or_stop

PAGE_SIZE = 50
ANYONE = "(anyone)"

st.title("History")
store = ctx.engine.store
facets = load_or_stop("reading the sync history", history_facets, store)
if not facets["tables"]:
    st.info("No sync has run yet. Start one from the **Board** or the Sync page (or let a schedule run): every "
            "sync, from the dashboard, the API, a schedule or the command line, is charted here.",
            icon=":material/monitoring:")
    st.page_link("pages/board.py", label="Go to the Board", icon=":material/dashboard:")
    st.stop()

today = dt.datetime.now(dt.UTC).date()
first_day = facets["first_created"].astimezone(dt.UTC).date()
table_col, range_col, bucket_col = st.columns([3, 2, 1])
tables = table_col.multiselect("Tables", facets["tables"], placeholder="all tables")
picked = range_col.date_input("Time range (UTC)", value=(max(first_day, today - dt.timedelta(days=89)), today),
                              max_value=today)
since, until = (picked if isinstance(picked, tuple) and len(picked) == 2 else (first_day, today))
bucket = bucket_col.selectbox("Chart per", CHART_BUCKETS, index=CHART_BUCKETS.index(chart_bucket(since, until)))
trigger_col, user_col = st.columns(2)
trigger = trigger_col.selectbox("Started from", [ANYONE, *facets["triggers"]])
user = user_col.selectbox("Started by", [ANYONE, *facets["users"]])
query = JobQuery(tables=tuple(tables), trigger=None if trigger == ANYONE else trigger,
                 started_by=None if user == ANYONE else user,
                 since=dt.datetime.combine(since, dt.time(), dt.UTC),
                 until=dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC))
summary = load_or_stop("summarizing the sync history", daily_summary, store, query, bucket)
if summary.empty:
    st.info("No sync matches these filters: widen the time range, or clear the table and user filters.",
            icon=":material/filter_alt_off:")
    st.stop()

by_status = summary.groupby("status")["jobs"].sum()
totals = st.columns(6)
totals[0].metric("Syncs", f"{int(summary['jobs'].sum()):,}")
totals[1].metric("Completed", f"{int(by_status.get('completed', 0)):,}")
totals[2].metric("Failed", f"{int(by_status.get('failed', 0)):,}")
totals[3].metric("Skipped", f"{int(by_status.get('skipped', 0)):,}")
totals[4].metric("Rows synced", f"{int(summary['rows'].fillna(0).sum()):,}")
totals[5].metric("Data transferred", human_bytes(summary["bytes"].fillna(0).sum()))

st.plotly_chart(charts.syncs_by_status(summary, since, until, bucket), width="stretch", key="status_chart")
left, right = st.columns(2)
left.plotly_chart(charts.rows_per_bucket(summary, since, until, bucket), width="stretch", key="rows_chart")
right.plotly_chart(charts.duration_per_bucket(summary, since, until, bucket), width="stretch", key="duration_chart")

st.subheader("Jobs")
total = int(summary["jobs"].sum())
pages = max(1, -(-total // PAGE_SIZE))
page = st.number_input(f"Page (of {pages:,}, {PAGE_SIZE} jobs each, newest first)", min_value=1, max_value=pages,
                       value=1, step=1) if pages > 1 else 1
jobs, _ = load_or_stop("reading the jobs", store.find_jobs, query, PAGE_SIZE, (int(page) - 1) * PAGE_SIZE)
shown = show_jobs(jobs, key="history_jobs")

st.subheader("Job detail")
linked = st.query_params.get("job")  # from the board's "open in History"
by_id = {job["sync_id"]: job for job in jobs}
job_ids = list(by_id)
if linked and linked not in by_id and (linked_job := store.get_job(linked)):
    by_id[linked] = linked_job
    job_ids.insert(0, linked)
labels = {sid: f"{r.created_at:%Y-%m-%d %H:%M:%S} · {r.table} · {r.status} · {sid[:8]}"
          for sid, r in zip(shown["sync_id"], shown.itertuples(), strict=True)}
chosen = st.selectbox("Job", job_ids, index=job_ids.index(linked) if linked in job_ids else 0,
                      format_func=lambda sid: labels.get(sid, f"linked job {sid[:8]}"))
if chosen:
    charts.job_detail(by_id[chosen])
