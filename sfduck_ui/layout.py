"""What every page shares: the sidebar and the way errors are shown (a message, never a traceback)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import streamlit as st

from sfduck_core.errors import SfduckError, worded

T = TypeVar("T")
log = logging.getLogger("sfduck.dashboard")

# How the dashboard words the fix of an error (the CLI and the API word the same fixes their way).
DASHBOARD_HINTS = {
    "register": "Register it first on the Register page.",
    "incremental_key": "Choose its incremental key on the Register page, then sync again.",
    "primary_key": "Give it a primary key on the Register page.",
    "exclude_columns": "Leave such columns out on the Register page (Columns), then sync again.",
}


def show_error(exc: BaseException, doing: str) -> None:
    """Expected failures show their own message; anything else is a bug, reported as one."""
    if isinstance(exc, SfduckError):
        st.error(worded(exc, DASHBOARD_HINTS), icon=":material/error:")
    else:
        log.exception("Unexpected error while %s", doing)
        st.error(
            f"Something unexpected went wrong while {doing} ({type(exc).__name__}: {exc}). "
            "This is a bug in sfduck: try again, and report it with the server log if it persists.",
            icon=":material/bug_report:",
        )


@contextlib.contextmanager
def user_errors(doing: str) -> Iterator[None]:
    """For actions (button clicks): show what went wrong and let the rest of the page render."""
    try:
        yield
    except Exception as exc:
        show_error(exc, doing)


def load_or_stop(doing: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """For what a page cannot do without: show the error and stop the page there."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        show_error(exc, doing)
        st.stop()
        raise  # unreachable: st.stop() raises


ASSETS = Path(__file__).resolve().parent / "assets"


def configure_page() -> None:
    """Same title, icon, logo and wide layout whether the entrypoint or a page file runs first."""
    st.set_page_config(page_title="sfduck", page_icon=str(ASSETS / "mark.svg"), layout="wide")
    st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "mark.svg"), size="large")
    st.html(_STYLE)


_STYLE = f"<style>{(ASSETS / 'style.css').read_text()}</style>"


_FLASH_KEY = "_sfduck_flash"


def flash(message: str) -> None:
    """A confirmation that survives the st.rerun() that follows an action."""
    st.session_state.setdefault(_FLASH_KEY, []).append(message)


def show_flashes() -> None:
    for message in st.session_state.pop(_FLASH_KEY, []):
        st.success(message, icon=":material/check_circle:")
