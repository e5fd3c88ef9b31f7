"""Preview synced tables (rows, count, SUMMARIZE, sync status) and query them read-only."""
# ruff: noqa: E402  -- the login/role gate must be the page's first statement, before other imports

from sfduck_ui.auth import require_page

ctx, viewer = require_page("preview")

import streamlit as st

from sfduck_core.preview import (
    PREVIEW_ROWS,
    QUERY_MAX_ROWS,
    QUERY_TIMEOUT_S,
    cached_summary,
    first_rows,
    row_count,
    run_read_only_query,
    starter_query,
    sync_versions,
    to_csv_bytes,
    to_parquet_bytes,
)
from sfduck_core.reader import reader_text
from sfduck_ui import charts
from sfduck_ui.layout import load_or_stop, user_errors
from sfduck_ui.values import show_exact

_RESULT_KEY = "_sfduck_query_result"
_SUMMARY_KEY = "_sfduck_summary_of"  # the (schema, table) the user asked to summarize
store = ctx.engine.store

st.title("Preview")
synced = load_or_stop("listing the synced tables", store.synced_tables)
if not synced:
    st.info("No table has been synced yet: start a sync from the **Board** (register a table on Discover first). "
            "Its rows show here once it has run.", icon=":material/table_view:")
    st.page_link("pages/board.py", label="Go to the Board", icon=":material/dashboard:")
    st.stop()

by_label = {f"{schema}.{table}": (schema, table) for schema, table in synced}
label = st.selectbox("Synced table", list(by_label), key="preview_table")
schema, table = by_label[label]

status = load_or_stop("reading the sync status", store.sync_status, schema, table) or {}
versions = load_or_stop("listing the table's versions", sync_versions, store, schema, table)
as_of = None  # the earlier sync whose version is shown, or None: the table now
if versions:  # a DuckLake keeps every sync's version
    labels = {"now": None, **{f"after the {job['strategy']} of {job['completed_at'][:19].replace('T', ' ')} UTC "
                              f"(snapshot {job['stats']['snapshot_id']})": job for job in versions}}
    as_of = labels[st.selectbox("As of", list(labels), key="preview_as_of")]
snapshot_id = as_of["stats"]["snapshot_id"] if as_of else None
if as_of is not None and viewer.is_admin:
    with st.form("restore_form"):
        st.caption("Make this version the table's current one again: a restore job, recorded in the history "
                   "(the current version stays readable here as an earlier one). The next incremental sync "
                   "fetches what changed in Snowflake since this version.")
        confirmed = st.checkbox(f"Restore {label} to this version")
        restore = st.form_submit_button("Restore this version", icon=":material/history:")
    if restore and not confirmed:
        st.warning("Tick the box to confirm the restore.")
    elif restore:
        with user_errors("restoring the table"), st.spinner("Restoring..."):
            job = ctx.engine.restore(schema, table, as_of["sync_id"], trigger="dashboard",
                                     started_by=viewer.username)
            st.success(f"Restored {label} to the version of sync {as_of['sync_id']} "
                       f"({job['stats']['rows_processed']:,} rows; restore job {job['sync_id']}).")
            status = store.sync_status(schema, table) or {}
            snapshot_id = None  # show what the table is now
count = load_or_stop("counting rows", row_count, store, schema, table, snapshot_id)
kept_in = store.storage.place
metrics = st.columns(3)
if snapshot_id is not None and as_of is not None:  # an earlier version: its own numbers, not today's
    metrics[0].metric(f"Rows in {kept_in} at that version", f"{count:,}")
    metrics[1].metric("That sync", f"{as_of['strategy']}, {as_of['status']}")
    source_rows = (as_of.get("stats") or {}).get("total_rows")
    metrics[2].metric("Rows in Snowflake at that sync", "?" if source_rows is None else f"{source_rows:,}")
    st.caption(f"The version that sync {as_of['sync_id'][:8]} left in {kept_in} "
               f"({as_of['completed_at'][:19].replace('T', ' ')} UTC, snapshot {snapshot_id}).")
else:
    metrics[0].metric(f"Rows in {kept_in}", f"{count:,}")
    metrics[1].metric("Last sync", status.get("last_status") or "never")
    source_rows = status.get("source_row_count")
    metrics[2].metric("Rows in Snowflake at that sync", "?" if source_rows is None else f"{source_rows:,}")
    last_success = status.get("last_success_at")
    st.caption(f"Last successful sync: {last_success[:19].replace('T', ' ')} UTC" if last_success
               else "No successful sync recorded.")

rows_tab, summary_tab, status_tab, sql_tab, elsewhere_tab = st.tabs(
    ["First rows", "Summary", "Last sync", "SQL", "Open in your own DuckDB"])
with rows_tab:
    st.caption(f"The first {PREVIEW_ROWS} rows.")
    show_exact(load_or_stop("reading the first rows", first_rows, store, schema, table, snapshot_id=snapshot_id))
with summary_tab:
    st.caption("DuckDB SUMMARIZE: per column its type, min, max, approximate distinct count, average, standard "
               "deviation, approximate quartiles, count and share of NULLs.")
    if st.button("Summarize", icon=":material/query_stats:", help="Scans the whole table; kept until the next sync."):
        st.session_state[_SUMMARY_KEY] = (schema, table)
    if st.session_state.get(_SUMMARY_KEY) == (schema, table):
        with user_errors("summarizing the table"):
            summary = cached_summary(store, schema, table, status.get("last_success_sync_id"))
            show_exact(summary)
with status_tab:
    last_job = load_or_stop("reading the last sync", store.get_job, status["last_sync_id"]) \
        if status.get("last_sync_id") else None
    if last_job is None:
        st.info("No sync of this table is recorded.", icon=":material/info:")
    else:
        charts.job_detail(last_job)
        st.page_link("pages/history.py", label="This table's other syncs: History", icon=":material/monitoring:")
with sql_tab:
    max_mb = ctx.settings.sql_max_bytes / (1 << 20)
    st.caption(f"Read-only: one SELECT (or SUMMARIZE/DESCRIBE), at most {QUERY_MAX_ROWS:,} rows and {max_mb:g} MB, "
               f"stopped after {QUERY_TIMEOUT_S:.0f} s. It cannot change data or read files or the network.")
    with st.form("sql_form"):
        sql = st.text_area("SQL", value=starter_query(schema, table), height=120)
        run = st.form_submit_button("Run query", type="primary", icon=":material/play_arrow:")
    if run:
        st.session_state.pop(_RESULT_KEY, None)
        with user_errors("running the query"), st.spinner("Running the query..."):
            st.session_state[_RESULT_KEY] = run_read_only_query(
                ctx.settings.storage, sql, user=viewer.username, max_bytes=ctx.settings.sql_max_bytes,
                total_bytes=ctx.settings.sql_total_bytes)
    result = st.session_state.get(_RESULT_KEY)
    if result is not None:
        note = {"rows": f" (cut at {QUERY_MAX_ROWS:,} rows; there are more)",
                "bytes": f" (cut at {max_mb:g} MB of data; there are more rows: select fewer or narrower columns)",
                "total": " (cut: the results the server holds for everyone are near their limit, "
                         "SFDUCK_SQL_TOTAL_BYTES; there are more rows)",
                }.get(result.cut or "", "")
        st.caption(f"{result.table.num_rows:,} rows in {result.elapsed_s:.2f} s{note}")
        with user_errors("showing the result"):
            show_exact(result.table)
            csv_col, parquet_col = st.columns(2)
            csv_col.download_button("Download CSV", to_csv_bytes(result.table), "sfduck_query.csv", "text/csv",
                                    icon=":material/download:")
            parquet_col.download_button("Download Parquet", to_parquet_bytes(result.table), "sfduck_query.parquet",
                                        "application/vnd.apache.parquet", icon=":material/download:")
with elsewhere_tab:
    st.caption("Open this table from your own DuckDB, with no network needed (`sfduck reader` prints the same "
               "lines): in Python,")
    st.code(reader_text(ctx.settings.storage, "python", schema, table), language="python")
    st.caption("or in a DuckDB of the same version on this machine:")
    st.code(reader_text(ctx.settings.storage, "sql", schema, table), language="sql")
