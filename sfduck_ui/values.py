"""Showing query results and table rows exactly (see sfduck_core.display): every value as the text
of what DuckDB holds, numbers still right-aligned, NULL the grid's one faded missing value."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import streamlit as st

from sfduck_core.display import exact_frame, numeric_columns


def show_exact(table: pa.Table, **dataframe_args: Any) -> None:
    """st.dataframe of `table`'s exact text; `dataframe_args` go to st.dataframe (key, height...)."""
    config = {name: st.column_config.TextColumn(alignment="right") for name in numeric_columns(table)}
    st.dataframe(exact_frame(table), hide_index=True, width="stretch", column_config=config, **dataframe_args)
