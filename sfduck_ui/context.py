"""The process-wide objects every dashboard session shares, built once per configuration.

One `SyncEngine` and one `BackgroundSyncs` per process: background threads outlive the script
run (and the session) that started them, so their registry must too. The cache is keyed by the
settings' inputs so that tests changing SFDUCK_* variables get a fresh context.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import streamlit as st

from sfduck_core.authdb import AUTH_DB_FILE, AuthDatabase
from sfduck_core.background import BackgroundSyncs
from sfduck_core.config import Settings, load_settings
from sfduck_core.engine import SyncEngine
from sfduck_core.errors import SfduckError
from sfduck_core.plugins import snowflake_source
from sfduck_core.sessions import SessionTokens, resolve_session_key
from sfduck_core.users import LoginThrottle

_log = logging.getLogger("sfduck")
_SETTINGS_ENV = ("SFDUCK_DUCKDB_PATH", "SFDUCK_DATA_DIR", "SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER",
                 "SFDUCK_USERS_FILE", "SFDUCK_LOCK_TIMEOUT", "SFDUCK_SESSION_HOURS", "SFDUCK_DEMO")


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    engine: SyncEngine
    syncs: BackgroundSyncs
    throttle: LoginThrottle
    tokens: SessionTokens

    @property
    def source_label(self) -> str:
        """What the sidebar shows as the data source: the account, or "demo"."""
        return "demo" if self.settings.demo else (self.settings.snowflake.account or "unknown")


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


@st.cache_resource(show_spinner=False)
def _build_context(_env_key: tuple[str | None, ...], cookie_key: str | None) -> AppContext:
    settings = load_settings()
    _log.info(settings.describe())
    engine = SyncEngine(settings, snowflake_source(settings))
    engine.store.claim_source(settings.source_label)  # demo mode never starts on an account's data
    state_dir = settings.duckdb_path.parent
    auth_db = AuthDatabase(state_dir / AUTH_DB_FILE)
    tokens = SessionTokens(resolve_session_key(cookie_key, state_dir), auth_db, settings.session_hours * 3600)
    return AppContext(settings, engine, BackgroundSyncs(engine), LoginThrottle(auth_db), tokens)


def app_context() -> AppContext:
    """The shared context, or an on-screen configuration error and a stopped page."""
    try:
        return _build_context(tuple(os.environ.get(name) for name in _SETTINGS_ENV), _configured_cookie_key())
    except SfduckError as exc:
        st.error(f"sfduck is not configured correctly: {exc}")
        st.stop()
        raise  # unreachable: st.stop() raises
