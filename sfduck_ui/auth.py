"""The login gate: every page calls `require_page(...)` as its first statement.

streamlit-authenticator (0.4.2, unmaintained since 2025) is used only here, for what it does well:
the signed re-login cookie and the session-state keys. The login form itself is ours, because the
library's form checks the password before we could apply the per-user throttle. Roles are looked
up in our own user directory on every run, so a role removed from the users file takes effect at
once, and a page whose file Streamlit runs directly (legacy `pages/` mode on a fresh server) is
still gated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import streamlit as st
import streamlit_authenticator as stauth
from streamlit.errors import StreamlitAPIException

from sfduck_core.users import ADMIN, ANALYST, UserDirectory, load_users, resolve_cookie_key, users_file_path
from sfduck_ui.context import AppContext, app_context
from sfduck_ui.layout import configure_page, show_flashes
from sfduck_ui.navigation import PAGES, allowed_pages, page_spec

COOKIE_NAME = "sfduck_auth"
COOKIE_EXPIRY_DAYS = 7.0
# Without this pause before a rerun the browser never receives the cookie component (notes).
COOKIE_FLUSH_S = 0.5
_AUTHENTICATOR_KEY = "_sfduck_authenticator"
_REQUESTED_PAGE_KEY = "_sfduck_requested_page"


@dataclass(frozen=True)
class Viewer:
    username: str
    name: str
    roles: tuple[str, ...]

    @property
    def role_label(self) -> str:
        return ", ".join(self.roles)


@st.cache_resource(show_spinner=False)
def _load_users_cached(demo: bool, path: str, mtime: float) -> UserDirectory:
    return load_users(demo, Path(path))


def user_directory(ctx: AppContext) -> UserDirectory:
    """The users file (re-read when it changes); a bad or unsafe file stops the app with the reason."""
    path = users_file_path()
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    try:
        return _load_users_cached(ctx.settings.demo, str(path), mtime)
    except Exception as exc:
        st.error(f"The dashboard cannot start: {exc}", icon=":material/lock:")
        st.stop()
        raise


def _configured_cookie_key() -> str | None:
    """`[sfduck] cookie_key` from secrets.toml (not `[auth]`, which is Streamlit's own OIDC section)."""
    try:
        section = st.secrets.get("sfduck")
    except Exception:  # no secrets file at all is fine: a key is generated instead
        return None
    if not section:
        return None
    value = section.to_dict().get("cookie_key") if hasattr(section, "to_dict") else section.get("cookie_key")
    return str(value) if value else None


def _authenticator(ctx: AppContext, users: UserDirectory) -> stauth.Authenticate:
    """One per session: building it renders the cookie component, which may happen only once per run."""
    holder = st.session_state.get(_AUTHENTICATOR_KEY)
    if holder is None or holder[0] is not users:  # the users file changed: the library needs the new list
        try:
            key = resolve_cookie_key(_configured_cookie_key(), ctx.settings.duckdb_path)
        except Exception as exc:
            st.error(f"The dashboard cannot start: {exc}", icon=":material/lock:")
            st.stop()
            raise
        authenticator = stauth.Authenticate(users.credentials(), COOKIE_NAME, key, COOKIE_EXPIRY_DAYS,
                                            auto_hash=False, login_sleep_time=0)
        holder = (users, authenticator)
        st.session_state[_AUTHENTICATOR_KEY] = holder
    return holder[1]


def current_viewer(ctx: AppContext) -> Viewer | None:
    """Who is logged in (restoring a session from the re-login cookie), or None."""
    users = user_directory(ctx)
    authenticator = _authenticator(ctx, users)
    if not st.session_state.get("authentication_status"):
        try:
            authenticator.login(location="unrendered")  # only reads the cookie
        except Exception:  # a cookie for a user who no longer exists: just ask for a login
            st.session_state["authentication_status"] = None
    if not st.session_state.get("authentication_status"):
        return None
    username = str(st.session_state.get("username") or "")
    roles = tuple(users.roles_of(username))
    if not roles:  # removed from the users file since logging in
        _clear_session(authenticator)
        return None
    return Viewer(username, str(st.session_state.get("name") or username), roles)


def _clear_session(authenticator: stauth.Authenticate) -> None:
    authenticator.logout(location="unrendered")


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
    if not submitted:
        return
    username = username.strip().lower()
    if not username or not password:
        st.error("Enter both a username and a password.")
        return
    refusal = ctx.throttle.refusal_message(username)
    if refusal:
        st.error(refusal, icon=":material/timer:")
        return
    if not users.verify(username, password):
        ctx.throttle.record_failure(username)
        st.error(
            ctx.throttle.refusal_message(username)
            or "Wrong username or password. Check both and try again.",
            icon=":material/error:",
        )
        return
    ctx.throttle.record_success(username)
    authenticator = _authenticator(ctx, users)
    st.session_state["logout"] = None  # the library refuses cookie re-login after a logout otherwise
    authenticator.authentication_controller.login(token={"username": username})
    authenticator.cookie_controller.set_cookie()
    time.sleep(COOKIE_FLUSH_S)
    st.rerun()


def logout(ctx: AppContext) -> None:
    authenticator = _authenticator(ctx, user_directory(ctx))
    authenticator.logout(location="unrendered")  # clears the session and deletes the cookie
    st.session_state.pop(_REQUESTED_PAGE_KEY, None)
    time.sleep(COOKIE_FLUSH_S)
    st.rerun()


def render_sidebar(ctx: AppContext, viewer: Viewer) -> None:
    with st.sidebar:
        st.markdown("## :material/database: sfduck")
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
