"""Register tables for syncing (keys, column selection), list registrations, unregister."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("register")

import pandas as pd
import streamlit as st

from sfduck_ui import cached
from sfduck_ui.layout import flash, load_or_stop, user_errors

ALL_COLUMNS, ONLY_THESE, ALL_EXCEPT = "All columns", "Only these columns", "All columns except"
NO_INCREMENTAL_KEY = "(none: full syncs only)"

engine = ctx.engine
schema = load_or_stop("reading the configured schema", engine.default_schema)
st.title("Register")
st.caption("Only registered tables can be synced. Registering again updates the settings.")

tables = load_or_stop("listing the Snowflake tables", cached.list_tables, ctx, schema)
if not tables:
    st.info(f"Schema {schema} has no tables to register.")
    st.stop()
table = st.selectbox("Table", [t.table_name for t in tables], key="register_table")
description = load_or_stop(f"describing {table}", cached.describe, ctx, schema, table)
existing = load_or_stop("reading the registration", engine.store.get_registration, schema, table)
current = existing if existing and existing.status == "active" else None
names = description.column_names

with st.form("register_form"):
    st.markdown(f"**{schema}.{table}**: {len(names)} columns"
                + (" (already registered: saving updates it)" if current else ""))
    default_pk = list(current.primary_key) if current and current.primary_key else list(description.primary_key)
    primary_key = st.multiselect("Primary key", names, default=[c for c in default_pk if c in names],
                                 help="Used to merge incremental syncs. Defaults to Snowflake's declared key.")
    key_options = [NO_INCREMENTAL_KEY, *names]
    key_index = key_options.index(current.incremental_key) if current and current.incremental_key in names else 0
    incremental_key = st.selectbox("Incremental key", key_options, index=key_index,
                                   help="A column that grows with every change (updated_at, id).")
    detect_deletes = st.checkbox("Detect deletes on incremental syncs",
                                 value=bool(current and current.detect_deletes))
    mode_default = ONLY_THESE if current and current.include_columns else (
        ALL_EXCEPT if current and current.exclude_columns else ALL_COLUMNS)
    mode = st.radio("Columns to copy", [ALL_COLUMNS, ONLY_THESE, ALL_EXCEPT], horizontal=True,
                    index=[ALL_COLUMNS, ONLY_THESE, ALL_EXCEPT].index(mode_default))
    chosen_default = list(current.include_columns or current.exclude_columns) if current else []
    chosen = st.multiselect("Columns (for the two selective options)", names,
                            default=[c for c in chosen_default if c in names])
    submitted = st.form_submit_button("Register", type="primary", icon=":material/playlist_add:")

if submitted:
    with user_errors(f"registering {table}"):
        if mode != ALL_COLUMNS and not chosen:
            st.error(f"'{mode}' needs at least one column picked, or choose '{ALL_COLUMNS}'.")
        else:
            registration = engine.register(
                schema, table, primary_key=primary_key or None,
                incremental_key=None if incremental_key == NO_INCREMENTAL_KEY else incremental_key,
                detect_deletes=detect_deletes,
                include_columns=chosen if mode == ONLY_THESE else (),
                exclude_columns=chosen if mode == ALL_EXCEPT else (), actor=viewer.username,
            )
            st.success(f"Registered {registration.schema_name}.{registration.table_name}. "
                       "Start a sync on the Sync page.", icon=":material/check_circle:")
            if registration.full_sync_required:
                st.info("The columns to copy changed, so the next sync (full or incremental) reloads the "
                        "whole table: columns left out disappear, columns added get every row's value.",
                        icon=":material/sync:")

st.subheader("Registrations")
registrations = load_or_stop("reading the registrations", engine.store.list_registrations, include_inactive=True)
if not registrations:
    st.info("Nothing is registered yet.")
    st.stop()
st.dataframe(pd.DataFrame([r.as_dict() for r in registrations]).drop(columns=["table_id"]),
             hide_index=True, width="stretch")

active = {f"{r.schema_name}.{r.table_name}": r for r in registrations if r.status == "active"}
if active:
    st.subheader("Unregister")
    target = st.selectbox("Registered table", list(active), key="unregister_table")
    if st.button("Unregister", icon=":material/playlist_remove:"):
        with user_errors(f"unregistering {target}"):
            engine.unregister(active[target].schema_name, active[target].table_name, actor=viewer.username)
            flash(f"Unregistered {target}. Its synced data and sync history are kept.")
            st.rerun()
