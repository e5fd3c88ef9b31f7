"""A list of sync jobs, drawn the same way wherever jobs are listed (the Sync page's recent syncs,
History): the same columns, names and units, no `None` for what a job did not record, and the long
sync id left out of sight (it is in each job's details) so the columns fit a laptop's width."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from sfduck_core.history import jobs_table
from sfduck_ui import status as look

SHOWN = ["created_at", "table", "status", "trigger", "started_by", "rows", "data", "duration", "error_message"]
CONFIG = {"created_at": st.column_config.DatetimeColumn("queued at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
          "rows": st.column_config.NumberColumn(format="localized"),
          "trigger": st.column_config.TextColumn("started from"),
          "started_by": st.column_config.TextColumn("started by"),
          "error_message": st.column_config.TextColumn("error")}


def show_jobs(jobs: list[dict[str, Any]], key: str) -> pd.DataFrame:
    """Draw `jobs` (newest first); returns the frame behind the grid (with each job's sync_id)."""
    shown = jobs_table(jobs)
    shown["status"] = [look.label(s) for s in shown["status"]]  # as the badges name them (pending: queued)
    st.dataframe(shown, hide_index=True, width="stretch", key=key, column_order=SHOWN, column_config=CONFIG)
    return shown
