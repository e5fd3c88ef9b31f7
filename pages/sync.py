"""Start syncs of registered tables in the background and watch them progress."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("sync")

import streamlit as st

from sfduck_core.engine import STRATEGIES, TRANSPORTS, SyncRequest
from sfduck_core.users import ADMIN
from sfduck_ui import cached
from sfduck_ui.demo_controls import render_demo_controls
from sfduck_ui.layout import load_or_stop, user_errors
from sfduck_ui.progress import remember_started, render_sync_activity

TRANSPORT_HELP = ("auto: stage when Snowflake allows unloading, else arrow. stage: COPY INTO a temporary stage "
                  "as Parquet, download, load. arrow: stream the query result's Arrow batches.")

st.title("Sync")
registrations = load_or_stop("reading the registrations", ctx.engine.store.list_registrations)
if not registrations:
    st.info("No table is registered yet. Register one first.")
    st.page_link("pages/register.py", label="Register a table", icon=":material/playlist_add:")
    st.stop()

by_label = {f"{r.schema_name}.{r.table_name}": r for r in registrations}
label = st.selectbox("Registered table", list(by_label), key="sync_table")
registration = by_label[label]

with st.form("sync_form"):
    strategy = st.radio("Strategy", STRATEGIES, horizontal=True,
                        help="full: replace the whole table. incremental: only rows past the last watermark.")
    columns = load_or_stop(f"describing {label}", cached.describe, ctx, registration.schema_name,
                           registration.table_name).column_names
    key_options = ["(the registered key)", *columns]
    incremental_key = st.selectbox(
        "Incremental key", key_options,
        help=f"Registered: {registration.incremental_key or 'none'}. Only used by incremental syncs.")
    where = ""
    if ADMIN in viewer.roles:
        where = st.text_input("Row filter (optional)", placeholder="e.g. amount > 100 AND region = 'EU'",
                              help="A Snowflake condition on this table's columns; it is validated before use.")
    transport = st.selectbox("Transport", TRANSPORTS, help=TRANSPORT_HELP)
    force = st.checkbox("Sync even if unchanged", help="By default a sync completes at once, as skipped, "
                        "when the table's last change and row count match the last successful sync.")
    start = st.form_submit_button("Start sync", type="primary", icon=":material/play_arrow:")

if start:
    with user_errors(f"starting the sync of {label}"):
        request = SyncRequest(
            schema_name=registration.schema_name, table_name=registration.table_name, strategy=strategy,
            transport=transport, where=where.strip() or None, force=force, trigger="dashboard",
            started_by=viewer.username,
            incremental_key=None if strategy != "incremental" or incremental_key == key_options[0]
            else incremental_key,
        )
        started = ctx.syncs.start(request)
        remember_started(started.sync_id)
        st.toast(f"Started syncing {label}", icon=":material/sync:")

with st.expander("Sync every registered table now"):
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

st.subheader("Activity")
render_sync_activity(ctx)
