"""Start syncs of registered tables in the background and watch them progress, next to the button."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("sync")

import streamlit as st

from sfduck_core.engine import STRATEGIES, TRANSPORTS, SyncRequest
from sfduck_ui import cached
from sfduck_ui.demo_controls import render_demo_controls
from sfduck_ui.layout import load_or_stop, user_errors
from sfduck_ui.progress import remember_started, render_recent, render_sync_activity

TRANSPORT_HELP = ("auto: stage when Snowflake allows unloading, else arrow. stage: COPY INTO a temporary stage "
                  "as Parquet, download, load. arrow: stream the query result's Arrow batches.")
REGISTERED_KEY = "(the registered key)"

st.title("Sync")
registrations = load_or_stop("reading the registrations", ctx.engine.store.list_registrations)
if not registrations:
    st.info("No table is registered yet. Find one on **Discover** and register it; then start its sync here.",
            icon=":material/travel_explore:")
    st.page_link("pages/discover.py", label="Discover and register a table", icon=":material/travel_explore:")
    st.stop()

by_label = {f"{r.schema_name}.{r.table_name}": r for r in registrations}
controls, activity = st.columns([2, 3], gap="large")
with controls:
    label = st.selectbox("Registered table", list(by_label), key="sync_table")
    registration = by_label[label]
    strategy = st.radio("Strategy", STRATEGIES, horizontal=True, key="sync_strategy",
                        help="full: replace the whole table. incremental: only rows past the last watermark.")
    incremental_key = None
    if strategy == "incremental":  # the key means nothing to a full sync
        columns = load_or_stop(f"describing {label}", cached.describe, ctx, registration.schema_name,
                               registration.table_name).column_names
        picked = st.selectbox("Incremental key", [REGISTERED_KEY, *columns], key="sync_incremental_key",
                              help=f"Registered: {registration.incremental_key or 'none'}.")
        incremental_key = None if picked == REGISTERED_KEY else picked
    where = st.text_input("Row filter (optional)", placeholder="e.g. amount > 100 AND region = 'EU'",
                          help="A Snowflake condition on this table's columns; it is validated before use.")
    transport = st.selectbox("Transport", TRANSPORTS, help=TRANSPORT_HELP)
    force = st.checkbox("Sync even if unchanged", help="By default a sync ends at once, as skipped, "
                        "when the table's last change and row count match the last successful sync.")
    start = st.button("Start sync", type="primary", icon=":material/play_arrow:")

with activity:
    if start:
        with user_errors(f"starting the sync of {label}"):
            started = ctx.syncs.start(SyncRequest(
                schema_name=registration.schema_name, table_name=registration.table_name, strategy=strategy,
                transport=transport, where=where.strip() or None, force=force, trigger="dashboard",
                started_by=viewer.username, incremental_key=incremental_key))
            remember_started(started.sync_id)
            st.toast(f"Started syncing {label}", icon=":material/sync:")
    render_sync_activity(ctx)

with st.expander("Sync every registered table now", icon=":material/sync:"):
    all_strategy = st.radio("Strategy for all", STRATEGIES, horizontal=True, key="sync_all_strategy")
    if st.button(f"Start {len(registrations)} sync(s)", icon=":material/sync:", key="sync_all"):
        with user_errors("starting a sync of every registered table"):
            for outcome in ctx.start_all(all_strategy, "dashboard", viewer.username):
                name = f"{outcome['schema_name']}.{outcome['table_name']}"
                if outcome["started"]:
                    remember_started(outcome["sync_id"])
                else:
                    st.warning(f"{name}: {outcome['reason']}", icon=":material/warning:")

render_demo_controls(ctx, viewer)  # demo mode, admins only

st.subheader("Recent syncs")
render_recent(ctx)
