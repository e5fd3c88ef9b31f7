"""Live progress of background syncs (whoever started them: this page, the API, a schedule), the
outcome of the ones this session started, and (drawn once per page run) the recent jobs of every table.

While a sync runs, a fragment redraws its progress every second; when the last one ends it asks
for one full rerun. While nothing runs, a slower fragment only watches for a sync started
elsewhere (an in-memory check) and switches to the fast one when it sees one.
"""

from __future__ import annotations

import datetime as dt

import streamlit as st

from sfduck_core.background import BackgroundSync
from sfduck_core.board import live_progress
from sfduck_core.errors import SfduckError
from sfduck_core.history import job_fields
from sfduck_core.humanize import human_bytes, human_duration
from sfduck_core.progress import SyncProgress
from sfduck_core.store import JobQuery
from sfduck_ui.context import AppContext
from sfduck_ui.jobs import show_jobs

_MY_SYNCS_KEY = "_sfduck_my_syncs"
POLL_EVERY = "1s"
IDLE_POLL_EVERY = "2s"
RECENT_HOURS = 24


def remember_started(sync_id: str) -> None:
    """Record that this session started `sync_id`, so its result is shown here when it ends."""
    st.session_state.setdefault(_MY_SYNCS_KEY, []).append(sync_id)


def describe_progress(p: SyncProgress) -> str:
    """One line saying where the sync is: the phase, then files or rows against their totals."""
    table = f"{p.schema_name}.{p.table_name}"
    if p.phase == "downloading" and p.files_total:
        return f"{table}: downloading file {p.files_done} of {p.files_total} ({human_bytes(p.bytes_done)})"
    if p.phase == "loading":
        total = f"{p.rows_total:,}" if p.rows_total is not None else "?"
        return f"{table}: loading rows, {p.rows_done:,} of {total}"
    if p.phase == "unloading":
        total = f" ({p.rows_total:,} rows expected)" if p.rows_total else ""
        return f"{table}: unloading in Snowflake{total}"
    if p.phase == "swapping":
        return f"{table}: swapping the new table in"
    if p.phase == "waiting" and p.message:  # for the DuckDB file: whose process holds it
        return f"{table}: {p.message}"
    return f"{table}: {p.phase}" + (f" ({p.message})" if p.message else "")


def _render_running(ctx: AppContext, bg: BackgroundSync) -> None:
    p = bg.progress
    with st.status(describe_progress(p), state="running", expanded=True):
        if st.button("Cancel this sync", key=f"cancel_{bg.sync_id}", icon=":material/cancel:",
                     help="Stops it within seconds; the table stays as it was before the sync."):
            try:
                ctx.engine.cancel(bg.sync_id)
                st.toast(f"Cancelling the sync of {p.schema_name}.{p.table_name}")
            except SfduckError as exc:
                st.warning(str(exc))
        st.progress(p.fraction or 0.0, text=p.message or p.phase)
        started = (bg.job or {}).get("started_at")
        live = live_progress(p, dt.datetime.fromisoformat(started) if isinstance(started, str) else None,
                             dt.datetime.now(dt.UTC))
        rows_total = f"{p.rows_total:,}" if p.rows_total is not None else "?"
        st.caption(f"Phase: **{p.phase}** · rows {p.rows_done:,} of {rows_total}"
                   + (f" · file {p.files_done} of {p.files_total}" if p.files_total else "")
                   + f" · {human_bytes(p.bytes_done)}"
                   + (f" · about {human_duration(live.time_left_s)} left" if live.time_left_s is not None else "")
                   + f" · sync {bg.sync_id[:8]}")


def _render_finished(bg: BackgroundSync) -> None:
    table = f"{bg.request.schema_name}.{bg.request.table_name}"
    if bg.cancelled:
        st.warning(f"Sync of {table}: {bg.error}", icon=":material/cancel:")
        return
    if bg.error is not None:
        st.error(f"Sync of {table} failed: {bg.error}", icon=":material/error:")
        return
    job = bg.result or {}
    stats = job.get("stats") or {}
    if job.get("status") == "skipped":
        with st.status(f"Skipped {table}: nothing changed since the last sync", state="complete", expanded=True):
            st.caption("Snowflake reports the same last change and row count as at the last successful sync, so "
                       "the copy is still current; tick \"Sync even if unchanged\" to sync anyway.")
        return
    rows = stats.get("rows_processed")
    with st.status(f"Synced {table}", state="complete", expanded=True):
        cols = st.columns(4)
        cols[0].metric("Rows", "?" if rows is None else f"{rows:,}")
        cols[1].metric("Duration", human_duration(stats.get("duration_s")))
        cols[2].metric("Transport", job.get("transport") or stats.get("transport") or "?")
        cols[3].metric("Transferred", human_bytes(stats.get("bytes_transferred")))
        if stats.get("fallback_reason"):
            st.caption(f"Note: {stats['fallback_reason']}")
        with st.expander("All statistics"):
            st.markdown("  \n".join(f"**{label}:** {value}" for label, value in job_fields(job)))


def render_recent(ctx: AppContext) -> None:
    """The last day's jobs of every table, newest first (all of them on the History page)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=RECENT_HOURS)
    try:
        jobs, total = ctx.engine.store.find_jobs(JobQuery(since=since), limit=10)
    except SfduckError as exc:  # a busy file: the next poll tries again
        st.caption(f"Recent syncs unavailable: {exc}")
        return
    if not jobs:
        return
    st.caption(f"Recent syncs of every table ({total:,} in the last {RECENT_HOURS} h; all on the History page)")
    show_jobs(jobs, key="recent_syncs")


def _render_all(ctx: AppContext) -> bool:
    """Draw running syncs (anyone's) and this session's finished ones; True if any is running."""
    running = ctx.syncs.running()
    for bg in running:
        _render_running(ctx, bg)
    mine = [ctx.syncs.get(sync_id) for sync_id in st.session_state.get(_MY_SYNCS_KEY, [])]
    for bg in reversed([b for b in mine if b is not None and not b.running]):
        _render_finished(bg)
    if not running and not any(mine):
        st.caption("No sync is running. Start one with the button: its progress shows here.")
    return bool(running)


@st.fragment(run_every=POLL_EVERY)
def _live(ctx: AppContext) -> None:
    if not _render_all(ctx):
        st.rerun(scope="app")  # the last sync ended: one full rerun, then polling stops


@st.fragment(run_every=IDLE_POLL_EVERY)
def _idle(ctx: AppContext) -> None:
    if _render_all(ctx):
        st.rerun(scope="app")  # a sync started elsewhere (API, schedule): switch to live progress


def render_sync_activity(ctx: AppContext) -> None:
    """Live progress while anything runs; otherwise a slow watch for syncs started elsewhere (which
    reruns the page, so a list of recent syncs drawn outside this fragment shows them too)."""
    if ctx.syncs.running():
        _live(ctx)
    else:
        _idle(ctx)
