"""Short-lived caches of Snowflake metadata, so a widget click does not re-query Snowflake.

Keyed by the DuckDB path too, so two configurations in one process (tests) never share entries.
The Refresh buttons call `forget_snowflake_metadata()`.
"""

from __future__ import annotations

import streamlit as st

from sfduck_core.engine import SyncEngine
from sfduck_core.source import TableDescription, TableInfo
from sfduck_ui.context import AppContext

METADATA_TTL_S = 60


@st.cache_data(ttl=METADATA_TTL_S, show_spinner="Asking Snowflake for its tables...")
def _list_tables(_engine: SyncEngine, db_key: str, schema: str) -> list[TableInfo]:
    return _engine.list_tables(schema)


@st.cache_data(ttl=METADATA_TTL_S, show_spinner="Describing the table...")
def _describe(_engine: SyncEngine, db_key: str, schema: str, table: str) -> TableDescription:
    return _engine.describe(schema, table)


def list_tables(ctx: AppContext, schema: str) -> list[TableInfo]:
    return _list_tables(ctx.engine, str(ctx.settings.duckdb_path), schema)


def describe(ctx: AppContext, schema: str, table: str) -> TableDescription:
    return _describe(ctx.engine, str(ctx.settings.duckdb_path), schema, table)


def forget_snowflake_metadata() -> None:
    _list_tables.clear()
    _describe.clear()
