"""Schedules: sync registered tables on a cron expression or a fixed interval (admins edit, all read)."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("schedules")

import datetime as dt

import pandas as pd
import streamlit as st

from sfduck_core.engine import STRATEGIES
from sfduck_core.humanize import exact_time
from sfduck_core.users import ADMIN
from sfduck_ui.layout import flash, load_or_stop, user_errors

CRON, INTERVAL = "cron expression", "every N minutes"

st.title("Schedules")
st.caption("Scheduled syncs run in the server process (./scripts/dashboard.sh); a run that falls due while "
           "the table is syncing is skipped, runs missed while the server was down become one catch-up run, "
           f"and a schedule pauses itself after {ctx.settings.schedule_failure_limit} failed runs in a row.")
schedules = load_or_stop("reading the schedules", ctx.schedules.list)
now = dt.datetime.now(dt.UTC)
if schedules:
    # one line per schedule, narrow enough for a laptop: its next three runs are under the form below,
    # and why a schedule paused itself is said below the table, in full
    st.dataframe(pd.DataFrame([{
        "table": s.label, "when": s.when, "strategy": s.strategy,
        "next run (UTC)": f"{s.next_runs(now, 1)[0].astimezone(dt.UTC):%b %d %H:%M}" if s.enabled else "paused",
        "last run (UTC)": f"{s.last_run_at.astimezone(dt.UTC):%b %d %H:%M}" if s.last_run_at else "not yet",
        "last outcome": s.last_outcome or "", "failures": s.consecutive_failures, "changed by": s.updated_by or "",
    } for s in schedules]), hide_index=True, width="stretch",
        column_config={"failures": st.column_config.NumberColumn(help="Failed runs in a row")})
    for s in schedules:
        if s.paused_reason:
            st.warning(f"{s.label}: {s.paused_reason}", icon=":material/pause_circle:")
else:
    st.info("No table has a schedule yet." + (" Give one a schedule below: it then syncs on its own, and the Board "
                                              "shows its next run." if ADMIN in viewer.roles else ""),
            icon=":material/schedule:")

if ADMIN not in viewer.roles:
    st.stop()

registrations = load_or_stop("reading the registrations", ctx.engine.store.list_registrations)
if not registrations:
    st.info("Register a table first; then give it a schedule here.")
    st.stop()
by_label = {f"{r.schema_name}.{r.table_name}": r for r in registrations}
existing = {s.table_id: s for s in schedules}

st.subheader("Create or change a schedule")
label = st.selectbox("Registered table", list(by_label), key="schedule_table")
registration = by_label[label]
current = existing.get(registration.table_id)
if current is not None:
    runs = ", ".join(exact_time(t) for t in current.next_runs(now)) if current.enabled else "none: it is paused"
    st.caption(f"Now: **{current.when}**, {current.strategy}. Next three runs: {runs}.")
# the timing kind sits outside the form, so only the field that means something for it is shown
kind = st.radio("Timing", [CRON, INTERVAL], horizontal=True, key=f"schedule_kind_{registration.table_id}",
                index=1 if current and current.interval_s else 0)
with st.form("schedule_form"):
    cron, timezone, minutes = None, "UTC", None
    if kind == CRON:
        cron = st.text_input("Cron expression", value=(current.cron if current and current.cron else "0 * * * *"),
                             help="Five fields: minute hour day-of-month month day-of-week, e.g. */15 * * * *.")
        timezone = st.text_input("Time zone of the cron expression", value=current.timezone if current else "UTC",
                                 help="An IANA name such as UTC or Europe/Paris.")
    else:
        minutes = st.number_input("Every (minutes)", min_value=1, max_value=527040, step=5,
                                  value=int((current.interval_s or 3600) / 60) if current else 60)
    strategy = st.radio("Strategy", STRATEGIES, horizontal=True,
                        index=STRATEGIES.index(current.strategy) if current else 0)
    enabled = st.checkbox("Enabled", value=current.enabled if current else True)
    save = st.form_submit_button("Save schedule", type="primary", icon=":material/schedule:")
if save:
    with user_errors(f"saving the schedule of {label}"):
        saved = ctx.schedules.save(registration, cron=cron, timezone=timezone,
                                   interval_s=int(minutes * 60) if minutes is not None else None,
                                   strategy=strategy, enabled=enabled, actor=viewer.username)
        runs = ", ".join(exact_time(t) for t in saved.next_runs(dt.datetime.now(dt.UTC)))
        flash(f"Saved: {saved.label} {saved.when}; next runs {runs}." if saved.enabled
              else f"Saved: {saved.label} {saved.when}, paused (tick Enabled to let it run).")
        st.rerun()

if current is not None:
    left, right = st.columns(2)
    if current.enabled and left.button("Pause", icon=":material/pause:"):
        with user_errors(f"pausing {label}"):
            ctx.schedules.set_enabled(current.table_id, False, viewer.username)
            flash(f"Paused the schedule of {label}.")
            st.rerun()
    if not current.enabled and left.button("Resume", icon=":material/play_arrow:"):
        with user_errors(f"resuming {label}"):
            ctx.schedules.set_enabled(current.table_id, True, viewer.username)
            flash(f"Resumed the schedule of {label}.")
            st.rerun()
    if right.button("Delete schedule", icon=":material/delete:"):
        with user_errors(f"deleting the schedule of {label}"):
            ctx.schedules.delete(current.table_id, viewer.username)
            flash(f"Deleted the schedule of {label}; the table stays registered.")
            st.rerun()
