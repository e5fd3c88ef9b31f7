"""Sync history: rows, duration, throughput and failures over time, and each job's full record."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("history")

import datetime as dt

import plotly.express as px
import streamlit as st

from sfduck_core.catalog import filter_jobs, jobs_frame
from sfduck_ui.layout import load_or_stop

st.title("History")
jobs = jobs_frame(load_or_stop("reading the sync history", ctx.engine.store.history))
if jobs.empty:
    st.info("No sync has run yet. Syncs started from the Sync page or the command line appear here.")
    st.stop()

today = dt.datetime.now(dt.UTC).date()
first_day = jobs["created_at"].min().date()
table_col, range_col = st.columns([2, 1])
tables = table_col.multiselect("Tables", sorted(jobs["table"].unique()), placeholder="all tables")
picked = range_col.date_input("Time range (UTC)", value=(first_day, today), max_value=today)
since, until = (picked if isinstance(picked, tuple) and len(picked) == 2 else (first_day, today))
shown = filter_jobs(jobs, tables,
                    dt.datetime.combine(since, dt.time(), dt.UTC),
                    dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC))
if shown.empty:
    st.info("No sync matches these filters; widen the time range or pick other tables.")
    st.stop()

done = shown[shown["status"] == "completed"]
failed = shown[shown["status"] == "failed"]
totals = st.columns(4)
totals[0].metric("Syncs", len(shown))
totals[1].metric("Completed", len(done))
totals[2].metric("Failed", len(failed))
totals[3].metric("Rows synced", f"{int(done['rows'].fillna(0).sum()):,}")

rows_chart = px.scatter(shown, x="created_at", y="rows", color="table", symbol="status",
                        hover_data=["sync_id", "strategy", "transport", "duration_s"],
                        title="Rows per sync over time")
rows_chart.update_traces(marker={"size": 11})
rows_chart.update_yaxes(rangemode="tozero")
st.plotly_chart(rows_chart, width="stretch", key="rows_chart")

left, right = st.columns(2)
timed = shown.dropna(subset=["duration_s"])
left.plotly_chart(px.bar(timed, x="created_at", y="duration_s", color="table", title="Duration per sync (s)",
                         hover_data=["sync_id", "status"]), width="stretch", key="duration_chart")
right.plotly_chart(px.bar(timed.dropna(subset=["rows_per_s"]), x="created_at", y="rows_per_s", color="table",
                          title="Throughput per sync (rows/s)", hover_data=["sync_id"]),
                   width="stretch", key="throughput_chart")

if failed.empty:
    st.caption("No failed syncs in this range.")
else:
    per_day = failed.assign(day=failed["created_at"].dt.date).groupby(["day", "table"]).size()
    st.plotly_chart(px.bar(per_day.reset_index(name="failures"), x="day", y="failures", color="table",
                           title="Failures per day"), width="stretch", key="failures_chart")

st.subheader("Jobs")
st.dataframe(shown, hide_index=True, width="stretch",
             column_config={"rows": st.column_config.NumberColumn(format="localized"),
                            "rows_per_s": st.column_config.NumberColumn("rows/s", format="%.0f"),
                            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.2f")})

st.subheader("Job detail")
labels = {f"{r.created_at:%Y-%m-%d %H:%M:%S} · {r.table} · {r.status} · {r.sync_id[:8]}": r.sync_id
          for r in shown.itertuples()}
chosen = st.selectbox("Job", list(labels))
job = load_or_stop("reading the job", ctx.engine.store.get_job, labels[chosen])
if job and job.get("error_message"):
    st.error(f"This sync failed: {job['error_message']}")
st.json(job or {}, expanded=2)
