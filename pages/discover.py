"""Discover: the Snowflake schema's tables, one table's columns and full-sync estimate, and (for
admins) registering it for syncing, right beside it. Registrations are listed and removed here too."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("discover")

import pandas as pd
import streamlit as st

from sfduck_core.catalog import (
    columns_overview,
    find_table,
    full_sync_estimate,
    human_bytes,
    search_tables,
    tables_overview,
)
from sfduck_ui import cached
from sfduck_ui.layout import flash, load_or_stop, user_errors

ALL_COLUMNS, ONLY_THESE, ALL_EXCEPT = "All columns", "Only these columns", "All columns except"
NO_INCREMENTAL_KEY = "(none: full syncs only)"

engine = ctx.engine
schema = load_or_stop("reading the configured schema", engine.default_schema)
st.title("Discover")
st.caption(f"Tables in Snowflake schema `{schema}`. Click a column header to sort"
           + ("; pick a table to see its columns and register it for syncing." if viewer.is_admin else "."))

left, right = st.columns([4, 1], vertical_alignment="bottom")
search = left.text_input("Search tables", placeholder="part of a table name")
if right.button("Refresh", icon=":material/refresh:", help="Ask Snowflake again (lists are cached for a minute)."):
    cached.forget_snowflake_metadata()

tables = load_or_stop("listing the Snowflake tables", cached.list_tables, ctx, schema)
registrations = load_or_stop("reading the registrations", engine.store.list_registrations, include_inactive=True)
overview = search_tables(tables_overview(tables, registrations, schema), search)
st.dataframe(
    overview, hide_index=True, width="stretch",
    column_config={
        "rows": st.column_config.NumberColumn("rows", format="localized"),
        "size": st.column_config.TextColumn("size in Snowflake"),
        "last_modified": st.column_config.DatetimeColumn("last modified"),
        "registered": st.column_config.CheckboxColumn("registered"),
    },
)
if overview.empty:
    st.info(f"No table name contains '{search}': try a shorter part of the name." if search else
            f"Schema {schema} has no tables yet. Create one in Snowflake, then press Refresh.",
            icon=":material/search_off:")
    st.stop()

table = st.selectbox("Table", overview["table"].tolist(), key="discover_table")
description = load_or_stop(f"describing {table}", cached.describe, ctx, schema, table)
estimate = full_sync_estimate(find_table(tables, table), description)
names = description.column_names

st.subheader(f"{schema}.{table}")
rows_col, bytes_col, cols_col, pk_col = st.columns(4)
rows_col.metric("Rows a full sync moves", "?" if estimate.rows is None else f"{estimate.rows:,}")
bytes_col.metric("Size in Snowflake", human_bytes(estimate.bytes),
                 help="Snowflake's compressed storage size; the Parquet files a stage sync downloads are close to "
                      "it. The emulator reports 0.")
cols_col.metric("Columns", estimate.columns)
pk_col.metric("Primary key", ", ".join(description.primary_key) or "none")
columns_tab, register_tab = st.tabs(["Columns", "Register for syncing"])
with columns_tab:
    st.dataframe(columns_overview(description), hide_index=True, width="stretch", column_config={
        "snowflake_type": "Snowflake type", "duckdb_type": "DuckDB type", "primary_key": "primary key",
        "type_mapped": st.column_config.CheckboxColumn("type mapped", help="Unticked: copied as text")})

with register_tab:
    existing = load_or_stop("reading the registration", engine.store.get_registration, schema, table)
    current = existing if existing and existing.status == "active" else None
    if not viewer.is_admin:
        st.info("Registering a table needs the admin role. "
                + (f"{schema}.{table} is registered: its syncs are on the Board." if current
                   else "Ask an admin to register this one."), icon=":material/lock:")
    else:
        with st.form("register_form"):
            st.markdown(f"**{schema}.{table}**: {len(names)} columns"
                        + (" (already registered: saving updates it)" if current else ""))
            default_pk = (list(current.primary_key) if current and current.primary_key
                          else list(description.primary_key))
            primary_key = st.multiselect("Primary key", names, default=[c for c in default_pk if c in names],
                                         help="Used to merge incremental syncs. Defaults to Snowflake's declared "
                                              "key.")
            key_options = [NO_INCREMENTAL_KEY, *names]
            key_index = (key_options.index(current.incremental_key)
                         if current and current.incremental_key in names else 0)
            incremental_key = st.selectbox("Incremental key", key_options, index=key_index,
                                           help="A column that grows with every change (updated_at, id).")
            detect_deletes = st.checkbox("Detect deletes on incremental syncs",
                                         value=bool(current and current.detect_deletes),
                                         help="Only used with an incremental key.")
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
                    st.success(f"Registered {registration.schema_name}.{registration.table_name}. It is on the "
                               "Board now: start its first sync there or on the Sync page.",
                               icon=":material/check_circle:")
                    st.page_link("pages/board.py", label="Go to the Board", icon=":material/dashboard:")
                    if registration.full_sync_required:
                        st.info("The columns to copy changed, so the next sync (full or incremental) reloads the "
                                "whole table: columns left out disappear, columns added get every row's value.",
                                icon=":material/sync:")

if not viewer.is_admin:
    st.stop()
st.subheader("Registrations")
registrations = load_or_stop("reading the registrations", engine.store.list_registrations, include_inactive=True)
if not registrations:
    st.info("Nothing is registered yet: pick a table above and register it.", icon=":material/playlist_add:")
    st.stop()
st.dataframe(pd.DataFrame([r.as_dict() for r in registrations]).drop(columns=["table_id", "full_sync_required"])
             .fillna({"incremental_key": ""}), hide_index=True, width="stretch", column_config={
                 "table_name": "table", "schema_name": "schema", "incremental_key": "incremental key",
                 "primary_key": "primary key", "detect_deletes": "detect deletes",
                 "include_columns": "only these columns", "exclude_columns": "all columns except"})
active = {f"{r.schema_name}.{r.table_name}": r for r in registrations if r.status == "active"}
if active:
    target_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
    target = target_col.selectbox("Unregister a table", list(active), key="unregister_table")
    if button_col.button("Unregister", icon=":material/playlist_remove:"):
        with user_errors(f"unregistering {target}"):
            engine.unregister(active[target].schema_name, active[target].table_name, actor=viewer.username)
            flash(f"Unregistered {target}. Its synced data and sync history are kept.")
            st.rerun()
