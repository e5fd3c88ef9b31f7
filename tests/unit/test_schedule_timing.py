"""Schedules are validated before anything is stored, each bad combination with its own message."""

from __future__ import annotations

import datetime as dt

import pytest

from sfduck_core.errors import SfduckError
from sfduck_core.schedules import Schedule, validate_timing


@pytest.mark.parametrize(("cron", "tz", "interval", "strategy", "says"), [
    ("* * *", "UTC", None, "full", "Invalid cron"),
    ("0 0 31 2 *", "UTC", None, "full", "Invalid cron"),
    ("0 * * * *", "../../etc/passwd", None, "full", "time zone"),
    (None, "UTC", 30, "full", "at least 60"),
    (None, "UTC", None, "full", "either"),
    ("0 * * * *", "UTC", None, "sideways", "strategy"),
])
def test_bad_schedules_are_refused_clearly(cron: str | None, tz: str, interval: int | None, strategy: str,
                                           says: str) -> None:
    with pytest.raises(SfduckError, match=says):
        validate_timing(cron, tz, interval, strategy)


def test_cron_due_times_follow_the_time_zone_across_daylight_saving() -> None:
    daily = Schedule("t", "S", "T", "full", True, cron="30 2 * * *", timezone="Europe/Berlin")
    # 2:30 does not exist on 29 March 2026 in Berlin: that run happens at 3:00 local (01:00 UTC)
    first = daily.next_after(dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC))
    assert first == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert daily.next_after(first) == dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC)
    every = Schedule("t", "S", "T", "full", True, interval_s=900)
    assert every.next_after(first) == first + dt.timedelta(minutes=15)
