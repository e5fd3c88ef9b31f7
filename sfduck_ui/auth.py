"""The login gate: every page calls `require_page(...)` as its first statement.

The re-login cookie is ours, not streamlit-authenticator's. The library renders an invisible cookie
component on every run; once that iframe loads in the browser it reports the cookies back, which
triggers a second run: the login form painted twice (text typed into the first was lost) and, after
a cookie re-login, the user's first click could be undone by that late rerun. Reading the cookie
needs no component at all (`st.context.cookies` holds the request's cookies, HttpOnly ones too), and
writing it needs one line of JavaScript in an `st.html` element that reports nothing back: it hands
the token to the server, whose Set-Cookie makes the cookie HttpOnly. So every page renders once,
stably, from its first paint, and no page script can read the session. Tokens are signed, checked and revoked by `sfduck_core.sessions`; roles
are looked up in our own user directory on every run, so a role removed from the users file takes
effect at once, and a page whose file Streamlit runs directly (legacy `pages/` mode on a fresh
server) is still gated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlparse

import streamlit as st
from streamlit import config as st_config
from streamlit.errors import StreamlitAPIException

from sfduck_core.exposure import demo_login_refusal
from sfduck_core.service import LoginRefusedError
from sfduck_core.sessions import Session
from sfduck_core.users import ADMIN, ANALYST, UserDirectory
from sfduck_ui.context import AppContext, app_context
from sfduck_ui.layout import configure_page, show_flashes
from sfduck_ui.navigation import PAGES, allowed_pages, page_spec

SESSION_COOKIE = "sfduck_session"
SESSION_COOKIE_ROUTE = "/_sfduck/session"  # served by sfduck_server.session_cookie
SESSION_STATE_KEY = "_sfduck_session"
_COOKIE_SCRIPT_KEY = "_sfduck_cookie_script"
_REQUESTED_PAGE_KEY = "_sfduck_requested_page"


@dataclass(frozen=True)
class Viewer:
    username: str
    name: str
    roles: tuple[str, ...]

    @property
    def role_label(self) -> str:
        return ", ".join(self.roles)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


def user_directory(ctx: AppContext) -> UserDirectory:
    """The users file (re-read when it changes); a bad or unsafe file stops the app with the reason."""
    try:
        return ctx.users()
    except Exception as exc:
        st.error(f"The dashboard cannot start: {exc}", icon=":material/lock:")
        st.stop()
        raise


def client_address() -> str | None:
    """The browser's address, for the login throttle: the websocket's peer, or what a proxy listed in
    SFDUCK_TRUSTED_PROXIES forwarded (sfduck_server.proxies sets it); None on loopback."""
    address = getattr(st.context, "ip_address", None)
    return address if isinstance(address, str) and address else None  # AppTest has no real client


def served_address() -> str | None:
    """The address this process's server listens on (`server.address`; None: every interface)."""
    return st_config.get_option("server.address") or None


def _login_refusal(ctx: AppContext) -> str | None:
    """Why logins are refused here (demo mode on a reachable address), checked wherever Streamlit
    serves this process: the server's lifespan decides for the API, this for the dashboard alone."""
    if ctx.login_refusal is None and getattr(st_config, "_server_mode", None):  # None in AppTest: no server
        ctx.login_refusal = demo_login_refusal(ctx.settings, served_address())
    return ctx.login_refusal


def _session_cookie() -> str | None:
    try:
        return st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # no browser request behind this run (AppTest, bare mode)
        return None


def current_viewer(ctx: AppContext) -> Viewer | None:
    """Who is logged in (restoring a session from the re-login cookie), or None.

    The session is re-checked on every run, so a logout in another tab, a password change or a
    user removed from the users file ends it at the next click.
    """
    users = user_directory(ctx)
    session: Session | None = st.session_state.get(SESSION_STATE_KEY)
    if session is not None and not ctx.tokens.is_valid(session, users.password_hash_of):
        session = None
    if session is None:
        session = ctx.tokens.verify(_session_cookie(), users.password_hash_of)
    roles = tuple(users.roles_of(session.username)) if session else ()
    if session is None or not roles:
        st.session_state.pop(SESSION_STATE_KEY, None)
        return None
    st.session_state[SESSION_STATE_KEY] = session
    entry = users.users[session.username]
    name = " ".join(part for part in (entry.get("first_name"), entry.get("last_name")) if part)
    return Viewer(session.username, name or session.username, roles)


def _queue_cookie(token: str | None) -> None:
    """Have the server set (a token) or clear (None) the re-login cookie from the next page that renders.

    The script only hands the token to the server's SESSION_COOKIE_ROUTE (sfduck_server.session_cookie),
    whose Set-Cookie makes it HttpOnly: no page script can read the cookie afterwards."""
    if token:
        request = {"method": "POST", "credentials": "same-origin", "headers": {"Content-Type": "application/json"},
                   "body": json.dumps({"token": token})}
    else:
        request = {"method": "DELETE", "credentials": "same-origin"}
    st.session_state[_COOKIE_SCRIPT_KEY] = (
        f"<script>fetch({json.dumps(SESSION_COOKIE_ROUTE)}, {json.dumps(request)});</script>")


def _write_queued_cookie() -> None:
    """Runs once per login or logout: the element reports nothing back, so it causes no rerun."""
    script = st.session_state.pop(_COOKIE_SCRIPT_KEY, None)
    if script:
        st.html(script, unsafe_allow_javascript=True)


def remember_requested_page() -> None:
    """Remember a deep link before the login page replaces it, to open it after login (upstream #179)."""
    url = getattr(st.context, "url", None)
    segment = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] if url else ""
    if segment in {spec.url_path for spec in PAGES}:
        st.session_state.setdefault(_REQUESTED_PAGE_KEY, segment)


def pop_requested_page(viewer: Viewer) -> str | None:
    """The remembered deep link's file, if this viewer may open it."""
    requested = st.session_state.pop(_REQUESTED_PAGE_KEY, None)
    allowed = {spec.url_path: spec.path for spec in allowed_pages(viewer.roles)}
    return allowed.get(requested) if requested else None


def render_login(ctx: AppContext) -> None:
    """The login form, with the demo users spelled out in demo mode, and throttled per user."""
    users = user_directory(ctx)
    st.title("sfduck")
    st.caption("Snowflake tables, copied into a local DuckDB file.")
    refusal = _login_refusal(ctx)
    if refusal:
        st.error(refusal, icon=":material/public_off:")
        return
    if users.demo:
        st.info(
            f"**Demo mode** (no Snowflake account configured; the data comes from the built-in emulator). "
            f"Log in as **{ADMIN}** / **{ADMIN}** (everything) or **{ANALYST}** / **{ANALYST}** "
            "(tables, history, preview).",
            icon=":material/info:",
        )
    with st.form("sfduck_login"):
        st.subheader("Log in")
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    _write_queued_cookie()
    if not submitted:
        return
    try:
        token, session = ctx.login(username, password, client_address())
    except LoginRefusedError as exc:
        st.error(str(exc), icon=":material/timer:" if exc.retry_after_s > 0 else ":material/error:")
        return
    st.session_state[SESSION_STATE_KEY] = session
    _queue_cookie(token)
    st.rerun()


def logout(ctx: AppContext) -> None:
    """Revoke the session server-side (the cookie is worthless from now on), then delete the cookie."""
    session = st.session_state.pop(SESSION_STATE_KEY, None)
    if session is not None:
        ctx.tokens.revoke(session)
    st.session_state.pop(_REQUESTED_PAGE_KEY, None)
    _queue_cookie(None)
    st.rerun()


def render_sidebar(ctx: AppContext, viewer: Viewer) -> None:
    with st.sidebar:
        for spec in allowed_pages(viewer.roles):
            try:
                st.page_link(spec.path, label=spec.title, icon=spec.icon)
            except StreamlitAPIException:  # a page file run on its own (tests): no menu to link into
                break
        st.divider()
        st.markdown(f"**User:** {viewer.name} (`{viewer.username}`)")
        st.markdown(f"**Role:** {viewer.role_label}")
        st.markdown(f"**Snowflake account:** {ctx.source_label}")
        if st.button("Log out", key="sfduck_logout", icon=":material/logout:"):
            logout(ctx)
        _write_queued_cookie()


def require_page(url_path: str) -> tuple[AppContext, Viewer]:
    """The gate: show only the login form to strangers and a plain refusal to the wrong role."""
    spec = page_spec(url_path)
    configure_page()
    ctx = app_context()
    viewer = current_viewer(ctx)
    if viewer is None:
        remember_requested_page()
        render_login(ctx)
        st.stop()
    assert viewer is not None
    render_sidebar(ctx, viewer)
    if not spec.roles & set(viewer.roles):
        st.error(
            f"The {spec.title} page needs the {' or '.join(sorted(spec.roles))} role; you are logged in as "
            f"{viewer.username} ({viewer.role_label}). Ask an admin, or use the pages in the sidebar.",
            icon=":material/block:",
        )
        st.stop()
    show_flashes()
    return ctx, viewer
