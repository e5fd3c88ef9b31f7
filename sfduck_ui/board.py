"""The status board's rendering: counts and filters, then one row per table, redrawn live while a
sync runs.

The rows live in one fragment: while any sync runs it redraws them every second (only them, so the
page neither flickers nor loses its scroll); when the last one ends it asks for one full rerun
(the counts change). While nothing runs, the same fragment redraws the rows the page read and
watches this process's syncs (an in-memory check), switching to live when a sync starts from
anywhere (API, schedule).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from sfduck_core.board import (
    ACTIVE_STATUSES,
    BoardRow,
    board_rows,
    filter_rows,
    live_progress,
    status_counts,
    with_live_syncs,
)
from sfduck_core.engine import SyncRequest
from sfduck_core.errors import SfduckError
from sfduck_core.humanize import exact_time, human_bytes, human_count, human_duration, relative_time
from sfduck_ui import status as look
from sfduck_ui.auth import Viewer
from sfduck_ui.context import AppContext
from sfduck_ui.layout import load_or_stop

LIVE_EVERY = "1s"
IDLE_EVERY = "3s"
_ROWS_KEY = "_board_rows"  # the rows the last page run read
ERROR_CHARS = 90
COLUMNS = [2.1, 1.5, 1.2, 1.0, 1.4, 3.0, 1.3]
HEADERS = ["Table", "Status", "Last sync", "Rows", "Next run", "Progress / last error", ""]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hover(text: str, title: str) -> str:
    """Text that shows `title` on hover (the exact time behind a relative one)."""
    return (f'<span title="{html.escape(title)}" style="border-bottom: 1px dotted currentColor">'
            f"{html.escape(text, quote=False)}</span>")


def _one_line(text: str, title: str, small: bool = False) -> str:
    """Text kept to one line (cut with an ellipsis at the cell's edge), whole on hover; `small`: a
    faded note under the cell's value."""
    note = "; font-size: 0.8em; opacity: 0.6" if small else ""
    return (f'<span title="{html.escape(title)}" style="display: block; white-space: nowrap; overflow: hidden; '
            f'text-overflow: ellipsis{note}">{html.escape(text, quote=False)}</span>')


def _rows(ctx: AppContext) -> list[BoardRow]:
    rows = board_rows(ctx.engine.store, ctx.schedules.list())
    running = {(bg.request.schema_name, bg.request.table_name): bg for bg in ctx.syncs.running()}
    return with_live_syncs(rows, running)


def load_rows(ctx: AppContext) -> list[BoardRow]:
    return load_or_stop("reading the sync status of every table", _rows, ctx)


def render_counts_and_filters(rows: Sequence[BoardRow]) -> tuple[list[str], list[str]]:
    """Counts of each status (they double as the status filter) and the schema filter."""
    counts = status_counts(rows)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.pills(
        "Status", list(counts), selection_mode="multi", key="board_status",
        format_func=lambda s: f"{look.style(s).icon} {look.label(s)} · {counts[s]}",
        help="How many tables have each status; pick some to show only those.")
    schemas = sorted({r.schema_name for r in rows})
    picked = right.multiselect("Schema", schemas, key="board_schema", placeholder="all schemas")
    return list(chosen or []), picked


def _progress_cell(container: DeltaGenerator, ctx: AppContext, row: BoardRow) -> None:
    if row.status == "waiting":  # for the DuckDB file another process holds: say whose
        container.caption(row.waiting_for or "Waiting for the DuckDB file, which another process holds.")
        return
    bg = next((b for b in ctx.syncs.running()
               if (b.request.schema_name, b.request.table_name) == (row.schema_name, row.table_name)), None)
    if bg is None:  # running in another process (the command line): no live numbers here
        container.caption("Running in another process; its numbers show when it ends.")
        return
    started = (bg.job or {}).get("started_at")
    started_at = dt.datetime.fromisoformat(started) if isinstance(started, str) else None
    live = live_progress(bg.progress, started_at, _now())
    total = f" of {human_count(live.rows_total)}" if live.rows_total else ""
    left = f" · about {human_duration(live.time_left_s)} left" if live.time_left_s is not None else ""
    text = (f"{live.phase} · {human_count(live.rows_done)}{total} rows · {human_bytes(live.bytes_done)}{left}"
            if live.phase != "queued" else "queued: waiting for a free sync slot")
    container.progress(live.fraction or 0.0, text=text)


def _error_cell(container: DeltaGenerator, row: BoardRow) -> None:
    line = row.error_line
    if line is None:
        if row.status == "paused" and row.paused_reason:
            container.caption(row.paused_reason)
        return
    short = line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"
    text, details = container.columns([4, 1], vertical_alignment="center", gap="small")
    text.markdown(_one_line(short, line), unsafe_allow_html=True)
    with details.popover("", icon=":material/open_in_full:", help="The whole error and the job's details"):
        st.markdown(f"**{row.label}**, sync `{row.error_sync_id}`")
        st.code(row.last_error or "", language=None, wrap_lines=True)
        if row.error_sync_id:
            st.page_link("pages/history.py", label="Open this job in History", icon=":material/monitoring:",
                         query_params={"job": row.error_sync_id})


def _start(ctx: AppContext, viewer: Viewer, row: BoardRow) -> None:
    try:
        ctx.syncs.start(SyncRequest(schema_name=row.schema_name, table_name=row.table_name,
                                    strategy=row.default_strategy, trigger="dashboard",
                                    started_by=viewer.username))
    except SfduckError as exc:
        st.session_state["_board_error"] = str(exc)
        return
    st.session_state["_board_started"] = f"Started a {row.default_strategy} sync of {row.label}."


def _render_row(ctx: AppContext, viewer: Viewer, row: BoardRow, now: dt.datetime) -> None:
    with st.container(border=True, key=f"board_row_{row.table_id}"):
        cells = st.columns(COLUMNS, vertical_alignment="center", gap="small")
        cells[0].markdown(f"**{row.table_name}**  \n:gray[:small[{row.schema_name}]]")
        cells[1].markdown(look.badge(row.status))
        cells[2].markdown(_hover(relative_time(row.last_ended_at, now), exact_time(row.last_ended_at))
                          if row.last_ended_at else ":gray[never]", unsafe_allow_html=True)
        cells[3].markdown(human_count(row.rows) if row.rows is not None else ":gray[–]")
        # when, and below it the schedule as it was entered (cut at the cell's edge, whole on hover)
        schedule = _one_line(row.schedule, row.schedule, small=True) if row.schedule else ""
        if row.next_run_at is not None:
            cells[4].markdown(_hover(relative_time(row.next_run_at, now), exact_time(row.next_run_at)) + schedule,
                              unsafe_allow_html=True)
        else:
            cells[4].markdown((":gray[paused]" if row.status == "paused" else ":gray[no schedule]") + schedule,
                              unsafe_allow_html=True)
        if row.status in ACTIVE_STATUSES:
            _progress_cell(cells[5], ctx, row)
        else:
            _error_cell(cells[5], row)
        if viewer.is_admin:
            cells[6].button("Sync", key=f"board_sync_{row.table_id}", icon=":material/play_arrow:",
                            disabled=row.status in ACTIVE_STATUSES, on_click=_start, args=(ctx, viewer, row),
                            help=f"Start a {row.default_strategy} sync of {row.label} now.")


def _render_rows(ctx: AppContext, viewer: Viewer, rows: list[BoardRow], statuses: list[str],
                 schemas: list[str]) -> bool:
    """Draw the filtered rows; True while any table is syncing."""
    now = _now()
    if message := st.session_state.pop("_board_error", None):
        st.error(message, icon=":material/error:")
    if message := st.session_state.pop("_board_started", None):
        st.toast(message, icon=":material/sync:")
    shown = filter_rows(rows, statuses, schemas)
    with st.container(key="board_header"):
        header = st.columns(COLUMNS, gap="small")
        for cell, title in zip(header, HEADERS, strict=True):
            cell.markdown(title)
    for row in shown:
        _render_row(ctx, viewer, row, now)
    if not shown:
        st.info("No table matches these filters; clear them to see every table.", icon=":material/filter_alt_off:")
    return any(r.status in ACTIVE_STATUSES for r in rows)


def _rows_fragment(ctx: AppContext, viewer: Viewer, statuses: list[str], schemas: list[str], live: bool) -> None:
    """The rows, always in this one fragment (idle or live), so a sync that starts or ends changes
    what the rows say, not where they live: moving them between the page and a fragment drew them
    twice (the new rows under the fading old ones) for the length of a page run."""
    if live:
        rows = _rows(ctx)  # every second: the live numbers
    else:
        if ctx.syncs.running():
            st.rerun(scope="app")  # a sync started (here, the API, a schedule): poll live, new counts
        rows = st.session_state[_ROWS_KEY]  # what the page run read: watching costs no read
    if not _render_rows(ctx, viewer, rows, statuses, schemas) and live:
        st.rerun(scope="app")  # the last sync ended: refresh the counts once, then stop polling


def render_board(ctx: AppContext, viewer: Viewer, rows: list[BoardRow]) -> None:
    statuses, schemas = render_counts_and_filters(rows)
    live = any(r.status in ACTIVE_STATUSES for r in rows)
    st.session_state[_ROWS_KEY] = rows
    st.fragment(_rows_fragment, run_every=LIVE_EVERY if live else IDLE_EVERY)(ctx, viewer, statuses, schemas, live)
