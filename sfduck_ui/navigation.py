"""The dashboard's pages and which roles may open them: the single source for the gate and the menu.

Every page has a stable path (the board is `/`). Each role's menu lists only its pages, but every
page is reachable by its address, so a bookmark of an admin page opened by an analyst says it
needs the admin role instead of Streamlit's "Page not found". A page that moved keeps its old
address as a forwarder (MOVED), so old bookmarks land on its new home.
"""

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


EVERYONE = frozenset({ADMIN, ANALYST})
HOME = "board"  # the default page, served at "/"

PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/board.py", "Board", HOME, ":material/dashboard:", EVERYONE),
    PageSpec("pages/discover.py", "Discover", "discover", ":material/travel_explore:", EVERYONE),
    PageSpec("pages/sync.py", "Sync", "sync", ":material/sync:", frozenset({ADMIN})),
    PageSpec("pages/schedules.py", "Schedules", "schedules", ":material/schedule:", EVERYONE),
    PageSpec("pages/history.py", "History", "history", ":material/monitoring:", EVERYONE),
    PageSpec("pages/preview.py", "Preview", "preview", ":material/table_view:", EVERYONE),
    PageSpec("pages/connection.py", "Connection", "connection", ":material/stethoscope:", frozenset({ADMIN})),
)

# old address -> the page that took over its job (each old address keeps a forwarding page file)
MOVED: dict[str, str] = {"tables": "discover", "register": "discover"}


def page_spec(url_path: str) -> PageSpec:
    for spec in PAGES:
        if spec.url_path == url_path:
            return spec
    raise KeyError(url_path)


def allowed_pages(roles: Iterable[str]) -> list[PageSpec]:
    """The pages a user with `roles` may open, in menu order."""
    held = set(roles)
    return [spec for spec in PAGES if spec.roles & held]


def forwarder_path(old_url_path: str) -> str:
    """The page file that keeps an old address alive (pages/<old>.py)."""
    return f"pages/{old_url_path}.py"
