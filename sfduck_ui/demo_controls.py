"""Demo mode, admins: make the demo's ORDERS change (now, or on a timer) so an incremental sync has
rows to move and deletes to detect. Shown nowhere else and to no one else."""

from __future__ import annotations

import streamlit as st

from sfduck_core.demo_changes import CHANGE_LIMIT, MIN_INTERVAL_S, DemoChange, change_demo_orders, demo_timer
from sfduck_core.service import Service
from sfduck_ui.auth import Viewer
from sfduck_ui.layout import user_errors

_LAST_KEY = "_sfduck_demo_change"


def render_demo_controls(ctx: Service, viewer: Viewer) -> None:
    if not ctx.settings.demo or not viewer.is_admin:
        return
    timer = demo_timer(ctx.settings)
    with st.expander("Demo: make ORDERS change", icon=":material/science:", expanded=timer.running):
        st.caption("The demo's Snowflake is an emulator: change its ORDERS table as a live system would "
                   "(new orders, changed orders with a later UPDATED_AT, deleted orders), then run an "
                   "incremental sync of ORDERS (incremental key UPDATED_AT, primary key ORDER_ID, detect "
                   "deletes) and watch it move just those rows.")
        with st.form("demo_change_form"):
            cols = st.columns(3)
            inserts = cols[0].number_input("Insert", 0, CHANGE_LIMIT, 20, step=1)
            updates = cols[1].number_input("Update", 0, CHANGE_LIMIT, 30, step=1)
            deletes = cols[2].number_input("Delete", 0, CHANGE_LIMIT, 10, step=1)
            every = st.number_input("Every (seconds), for the timer", int(MIN_INTERVAL_S), 3600, 60, step=10)
            now_col, start_col, stop_col = st.columns(3)
            change_now = now_col.form_submit_button("Change ORDERS now", icon=":material/edit:")
            start = start_col.form_submit_button("Start the timer", icon=":material/timer:")
            stop = stop_col.form_submit_button("Stop the timer", icon=":material/timer_off:", disabled=not timer.running)
        with user_errors("changing the demo's ORDERS"):
            change = DemoChange(int(inserts), int(updates), int(deletes)) if change_now or start else None
            if change_now and change is not None:
                st.session_state[_LAST_KEY] = change_demo_orders(ctx.settings, change)
            if start and change is not None:
                timer.start(float(every), change)
        if stop:
            timer.stop()
        done = st.session_state.get(_LAST_KEY)
        if done:
            st.success(f"ORDERS changed: {done['inserted']} inserted, {done['updated']} updated, "
                       f"{done['deleted']} deleted.", icon=":material/check:")
        if timer.running and timer.change is not None:
            c = timer.change
            st.info(f"Timer on: every {timer.interval_s:g} s, {c.inserts} inserted, {c.updates} updated, "
                    f"{c.deletes} deleted.", icon=":material/timer:")
        if timer.last:
            last = timer.last
            at = f"{last['at']:%H:%M:%S} UTC"
            st.caption(f"Timer's last change at {at}: " + (f"failed: {last['error']}" if "error" in last else
                       f"{last['inserted']} inserted, {last['updated']} updated, {last['deleted']} deleted."))
