"""sfduck dashboard entrypoint: authenticate, then offer only the pages the user's role allows.

Run with `streamlit run streamlit_app.py` (or ./scripts/dashboard.sh). Logged out, the only page is
the login form whatever the URL; logged in, every page has its address (the board is `/`), the
sidebar lists the role's pages, and a page of another role says which role it needs. Old addresses
of moved pages forward to their new page. Each page file also guards itself, because Streamlit runs
a `pages/` file directly on a fresh server's first request.
"""

import streamlit as st

from sfduck_core.files import owner_only_from_now_on
from sfduck_ui.auth import current_viewer, pop_requested_page, remember_requested_page, render_login
from sfduck_ui.context import app_context
from sfduck_ui.layout import configure_page
from sfduck_ui.navigation import HOME, MOVED, PAGES, allowed_pages, forwarder_path

owner_only_from_now_on()  # the dashboard served alone is an entry point too
configure_page()
ctx = app_context()
viewer = current_viewer(ctx)


def login_page() -> None:
    render_login(ctx)


if viewer is None:
    remember_requested_page()
    current = st.navigation([st.Page(login_page, title="Log in", url_path="login", default=True)],
                            position="hidden")
else:
    specs = allowed_pages(viewer.roles)
    pages = [st.Page(spec.path, title=spec.title, url_path=spec.url_path, icon=spec.icon,
                     default=spec.url_path == HOME) for spec in PAGES]
    pages += [st.Page(forwarder_path(old), title=old.title(), url_path=old) for old in MOVED]
    current = st.navigation(pages, position="hidden")
    requested = pop_requested_page(viewer)
    if requested and requested != next((s.path for s in specs if s.url_path == current.url_path), None):
        st.switch_page(requested)
current.run()
