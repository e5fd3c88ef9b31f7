"""One look per status (label, colour, icon), used by every badge and every chart.

Colours are Streamlit's badge colour names, and the same hex values are the theme's in
.streamlit/config.toml (a test keeps the two equal), so a green badge and a green bar are one
green. Tables are never coloured with these: charts colour by status only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfduck_core.board import BOARD_STATUSES


@dataclass(frozen=True)
class StatusStyle:
    label: str
    color: str  # a Streamlit badge colour name
    icon: str  # a Material icon


# theme colours (.streamlit/config.toml [theme] <name>Color, primaryColor): the single source of
# their values
COLORS = {
    "primary": "#0E7490",
    "green": "#1F9D55",
    "red": "#D64545",
    "blue": "#2F6FDE",
    "violet": "#7C5CD6",
    "orange": "#E07B00",
    "yellow": "#C9A100",
    "gray": "#7A8694",
}

STYLES: dict[str, StatusStyle] = {
    "completed": StatusStyle("completed", "green", ":material/check_circle:"),
    "failed": StatusStyle("failed", "red", ":material/error:"),
    "running": StatusStyle("running", "blue", ":material/sync:"),
    "pending": StatusStyle("queued", "violet", ":material/hourglass_top:"),
    # waiting for the DuckDB file another process holds: like a queued job, it starts by itself, so
    # it shares queued's colour (Streamlit has no tenth theme colour), told apart by label and icon
    "waiting": StatusStyle("waiting", "violet", ":material/lock_clock:"),
    "skipped": StatusStyle("skipped", "gray", ":material/skip_next:"),
    "cancelled": StatusStyle("cancelled", "orange", ":material/cancel:"),
    "paused": StatusStyle("paused", "yellow", ":material/pause_circle:"),
    "never": StatusStyle("never synced", "primary", ":material/radio_button_unchecked:"),
}
_UNKNOWN = StatusStyle("?", "gray", ":material/help:")


def style(status: str) -> StatusStyle:
    return STYLES.get(status, StatusStyle(status, _UNKNOWN.color, _UNKNOWN.icon))


def label(status: str) -> str:
    return style(status).label


def badge(status: str) -> str:
    """Markdown for a status badge (works in st.markdown, captions and table cells of markdown)."""
    s = style(status)
    return f":{s.color}-badge[{s.icon} {s.label}]"


def chart_colors() -> dict[str, str]:
    """Status label -> hex colour, for plotly's `color_discrete_map` (charts name statuses by label)."""
    return {s.label: COLORS[s.color] for s in STYLES.values()}


def chart_order() -> list[str]:
    """Status labels in board order, so stacks and legends read the same on every chart."""
    return [label(status) for status in BOARD_STATUSES]
