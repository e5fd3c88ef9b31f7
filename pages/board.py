"""The board, the home page: every registered table's sync status at a glance, live while syncs run."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("board")

import streamlit as st

from sfduck_ui.board import load_rows, render_board

st.title("Board")
rows = load_rows(ctx)
if not rows:
    st.caption("Every registered table's sync status, next run and last error, at a glance.")
    st.info("No table is registered yet, so there is nothing to watch. Find a table on **Discover** and "
            + ("register it: it shows up here, ready to sync." if viewer.is_admin
               else "ask an admin to register it: it shows up here once it is."),
            icon=":material/travel_explore:")
    st.page_link("pages/discover.py", label="Discover Snowflake tables", icon=":material/travel_explore:")
    st.stop()
st.caption("Every registered table: its last sync, rows, next run and last error. Hover a time for the exact "
           "moment; running syncs update live.")
render_board(ctx, viewer, rows)
