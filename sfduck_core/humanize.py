"""How numbers, sizes, durations and moments read to a person: one place, so every page says
"1.2 MB", "3 min 5 s" and "5 min ago" the same way.

Exact values (a table's own data) are another module's business: these are for sizes, counts and
times that describe syncs, where a rounded, readable figure is what a person wants.
"""

from __future__ import annotations

import datetime as dt

_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(value: int | float | None) -> str:
    """`1,536` -> `1.5 KB` (powers of 1024, the unit a file manager shows); None -> `?`."""
    if value is None:
        return "?"
    size = float(value)
    for unit in _BYTE_UNITS:
        if abs(size) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def bytes_unit(largest: float | None) -> tuple[float, str]:
    """The divisor and unit name that show `largest` bytes (and everything smaller on the same
    axis) as a readable number: an axis is labelled in one unit, never "1e+09"."""
    size, divisor = float(largest or 0), 1.0
    for unit in _BYTE_UNITS:
        if size / divisor < 1024 or unit == _BYTE_UNITS[-1]:
            return divisor, unit
        divisor *= 1024
    raise AssertionError("unreachable")


def human_count(value: int | float | None) -> str:
    """Rows and counts with thousands separators; None -> `?`."""
    return "?" if value is None else f"{int(value):,}"


def human_duration(seconds: float | None) -> str:
    """`0.42` -> `0.4 s`, `75` -> `1 min 15 s`, `7500` -> `2 h 5 min`, `200000` -> `2 days 7 h`."""
    if seconds is None:
        return "?"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {sec} s" if sec else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")


def duration_unit(largest_s: float | None) -> tuple[float, str]:
    """Seconds or minutes (or hours) for a duration axis, by its largest value."""
    largest = float(largest_s or 0)
    if largest >= 2 * 3600:
        return 3600.0, "h"
    if largest >= 120:
        return 60.0, "min"
    return 1.0, "s"


def human_interval(seconds: int) -> str:
    """A schedule's interval in the unit it was most likely entered in: `15 min`, `2 h`, `1 day`."""
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
    return f"{seconds} s"


def exact_time(moment: dt.datetime | None) -> str:
    """`2026-12-07 18:47:27 UTC`: what a tooltip shows behind a relative time."""
    if moment is None:
        return "never"
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def relative_time(moment: dt.datetime | None, now: dt.datetime) -> str:
    """`just now`, `5 min ago`, `3 h ago`, `2 days ago`, or `in 5 min` for a moment to come."""
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    ahead = delta < 0
    delta = abs(delta)
    if delta < 45:
        return "in under a minute" if ahead else "just now"
    if delta < 3600:
        text = f"{round(delta / 60)} min"
    elif delta < 86400:
        text = f"{round(delta / 3600)} h"
    else:
        days = round(delta / 86400)
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"in {text}" if ahead else f"{text} ago"
