"""The process-wide objects every dashboard session shares, built once per configuration.

One `SyncEngine` and one `BackgroundSyncs` per process: background threads outlive the script
run (and the session) that started them, so their registry must too. The cache is keyed by the
settings' inputs so that tests changing SFDUCK_* variables get a fresh context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from sfduck_core.background import BackgroundSyncs
from sfduck_core.config import Settings, load_settings
from sfduck_core.engine import SyncEngine
from sfduck_core.errors import SfduckError
from sfduck_core.users import LoginThrottle

_SETTINGS_ENV = ("SFDUCK_DUCKDB_PATH", "SFDUCK_DATA_DIR", "SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER",
                 "SFDUCK_USERS_FILE", "SFDUCK_LOCK_TIMEOUT")


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    engine: SyncEngine
    syncs: BackgroundSyncs
    throttle: LoginThrottle

    @property
    def source_label(self) -> str:
        """What the sidebar shows as the data source: the account, or "demo"."""
        return "demo" if self.settings.demo else (self.settings.snowflake.account or "unknown")


@st.cache_resource(show_spinner=False)
def _build_context(_env_key: tuple[str | None, ...]) -> AppContext:
    settings = load_settings()
    engine = SyncEngine(settings)
    return AppContext(settings, engine, BackgroundSyncs(engine), LoginThrottle())


def app_context() -> AppContext:
    """The shared context, or an on-screen configuration error and a stopped page."""
    try:
        return _build_context(tuple(os.environ.get(name) for name in _SETTINGS_ENV))
    except SfduckError as exc:
        st.error(f"sfduck is not configured correctly: {exc}")
        st.stop()
        raise  # unreachable: st.stop() raises
