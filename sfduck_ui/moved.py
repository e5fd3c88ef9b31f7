"""Old addresses of pages that moved: send the visitor to the page that does that job now."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from sfduck_ui.auth import require_page
from sfduck_ui.layout import flash
from sfduck_ui.navigation import MOVED, page_spec


def forward(old_url_path: str) -> None:
    """Gate as the new page would (strangers see only the login form), then switch to it, saying
    where things went."""
    target = page_spec(MOVED[old_url_path])
    require_page(target.url_path)
    message = f"This address moved: /{old_url_path} is now the **{target.title}** page (/{target.url_path})."
    try:
        flash(message)
        st.switch_page(target.path)
    except StreamlitAPIException:  # a page file run on its own (no menu to switch in): say it instead
        st.info(message, icon=":material/move_item:")
