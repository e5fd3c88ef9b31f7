"""The process-wide service every dashboard session shares (the same one the HTTP API uses).

Background threads outlive the script run (and the session) that started them, so their registry
must be process-wide: `sfduck_core.service.shared_service` hands the dashboard, the API and the
scheduler of one server the same engine, executor, users and throttle.
"""

from __future__ import annotations

import streamlit as st

from sfduck_core.errors import SfduckError
from sfduck_core.service import Service, shared_service

AppContext = Service  # what pages call `ctx`


def configured_cookie_key() -> str | None:
    """`[sfduck] cookie_key` from secrets.toml (not `[auth]`, which is Streamlit's own OIDC section)."""
    try:
        section = st.secrets.get("sfduck")
    except Exception:  # no secrets file at all is fine: a key is generated instead
        return None
    if not section:
        return None
    value = section.to_dict().get("cookie_key") if hasattr(section, "to_dict") else section.get("cookie_key")
    return str(value) if value else None


def app_context() -> AppContext:
    """The shared service, or an on-screen configuration error and a stopped page."""
    try:
        return shared_service(configured_cookie_key())
    except SfduckError as exc:
        st.error(f"sfduck is not configured correctly: {exc}")
        st.stop()
        raise  # unreachable: st.stop() raises
