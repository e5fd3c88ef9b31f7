"""Discover: the Snowflake schema's tables, and one table's columns and full-sync estimate."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("tables")

import streamlit as st

from sfduck_core.catalog import (
    columns_overview,
    find_table,
    full_sync_estimate,
    human_bytes,
    search_tables,
    tables_overview,
)
from sfduck_core.users import ADMIN
from sfduck_ui import cached
from sfduck_ui.layout import load_or_stop

schema = load_or_stop("reading the configured schema", ctx.engine.default_schema)
st.title("Tables")
st.caption(f"Tables in Snowflake schema `{schema}`. Click a column header to sort.")

left, right = st.columns([4, 1], vertical_alignment="bottom")
search = left.text_input("Search tables", placeholder="part of a table name")
if right.button("Refresh", icon=":material/refresh:", help="Ask Snowflake again (lists are cached for a minute)."):
    cached.forget_snowflake_metadata()

tables = load_or_stop("listing the Snowflake tables", cached.list_tables, ctx, schema)
registrations = load_or_stop("reading the registrations", ctx.engine.store.list_registrations)
overview = search_tables(tables_overview(tables, registrations, schema), search)
st.dataframe(
    overview, hide_index=True, width="stretch",
    column_config={
        "rows": st.column_config.NumberColumn("rows", format="localized"),
        "size_bytes": st.column_config.NumberColumn("size (bytes)", format="localized"),
        "last_modified": st.column_config.DatetimeColumn("last modified"),
        "registered": st.column_config.CheckboxColumn("registered"),
    },
)
if overview.empty:
    st.info("No table matches the search." if search else f"Schema {schema} has no tables.")
    st.stop()

table = st.selectbox("Show columns of", overview["table"].tolist())
description = load_or_stop(f"describing {table}", cached.describe, ctx, schema, table)
estimate = full_sync_estimate(find_table(tables, table), description)

st.subheader(f"{schema}.{table}")
rows_col, bytes_col, cols_col, pk_col = st.columns(4)
rows_col.metric("Full sync moves (rows)", "?" if estimate.rows is None else f"{estimate.rows:,}")
bytes_col.metric("Compressed size in Snowflake", human_bytes(estimate.bytes),
                 help="Snowflake's own storage size; the Parquet files a stage sync downloads are close to it. "
                      "The emulator reports 0.")
cols_col.metric("Columns", estimate.columns)
pk_col.metric("Primary key", ", ".join(description.primary_key) or "none")
st.dataframe(columns_overview(description), hide_index=True, width="stretch")
if ADMIN in viewer.roles:
    st.page_link("pages/register.py", label="Register a table for syncing", icon=":material/playlist_add:")
