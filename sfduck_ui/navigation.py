"""The dashboard's pages and which roles may open them: the single source for the gate and the menu."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sfduck_core.users import ADMIN, ANALYST


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to the entrypoint; also what st.page_link and AppTest.switch_page take
    title: str
    url_path: str
    icon: str
    roles: frozenset[str]


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/tables.py", "Tables", "tables", ":material/table_view:", frozenset({ADMIN, ANALYST})),
    PageSpec("pages/register.py", "Register", "register", ":material/playlist_add:", frozenset({ADMIN})),
    PageSpec("pages/sync.py", "Sync", "sync", ":material/sync:", frozenset({ADMIN})),
    PageSpec("pages/schedules.py", "Schedules", "schedules", ":material/schedule:", frozenset({ADMIN, ANALYST})),
    PageSpec("pages/history.py", "History", "history", ":material/monitoring:", frozenset({ADMIN, ANALYST})),
    PageSpec("pages/preview.py", "Preview", "preview", ":material/preview:", frozenset({ADMIN, ANALYST})),
    PageSpec("pages/connection.py", "Connection", "connection", ":material/stethoscope:", frozenset({ADMIN})),
)


def page_spec(url_path: str) -> PageSpec:
    for spec in PAGES:
        if spec.url_path == url_path:
            return spec
    raise KeyError(url_path)


def allowed_pages(roles: Iterable[str]) -> list[PageSpec]:
    """The pages a user with `roles` may open, in menu order."""
    held = set(roles)
    return [spec for spec in PAGES if spec.roles & held]
