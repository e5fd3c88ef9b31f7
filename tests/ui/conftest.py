"""Fixtures for the dashboard tests (AppTest): a temp DuckDB file, demo mode, clean caches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
RUN_TIMEOUT_S = 60


def clear_streamlit_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def ui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Demo mode on a fresh DuckDB file, no users file, and Streamlit's st.navigation code path.

    AppTest resets `PagesManager.uses_pages_directory` on every run; forcing it to False keeps the
    app on its `st.navigation` path as a browser session after the first request would be (the
    legacy direct-page path is covered by the browser test). Private API: re-check on upgrades.
    """
    for name in list(os.environ):
        if name.startswith("SNOWFLAKE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SFDUCK_DUCKDB_PATH", str(tmp_path / "sfduck.duckdb"))
    monkeypatch.setenv("SFDUCK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SFDUCK_USERS_FILE", str(tmp_path / "users.yaml"))
    monkeypatch.setenv("SFDUCK_LOCK_TIMEOUT", "10")
    monkeypatch.setenv("SFDUCK_DEMO_ROWS", os.environ.get("SFDUCK_DEMO_ROWS", "20000"))
    monkeypatch.chdir(tmp_path)  # no .env / secrets.toml of the developer leaks in
    original_init = PagesManager.__init__

    def init_on_navigation_path(self: PagesManager, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_on_navigation_path)
    clear_streamlit_caches()
    yield tmp_path
    clear_streamlit_caches()


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)


def log_in(at: AppTest, username: str, password: str) -> AppTest:
    """Fill the login form and submit it (the app reruns itself after a successful login)."""
    fields = {t.label: t for t in at.text_input}
    fields["Username"].input(username)
    fields["Password"].input(password)
    button(at, "Log in").click()
    return at.run()


def button(at: AppTest, label: str) -> Button:
    """The button labelled `label` (form submit buttons included), failing clearly if absent."""
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def texts(at: AppTest) -> str:
    """All the visible text of titles, markdown, captions and alerts, for assertions."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "info", "success", "warning"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return "\n".join(parts)
