"""Schedules are validated before anything is stored, each bad combination with its own message."""

from __future__ import annotations

import datetime as dt

import pytest

from sfduck_core.config import load_settings
from sfduck_core.errors import ConfigError, SfduckError
from sfduck_core.schedules import MIN_INTERVAL_S, Chore, Schedule, validate_timing


@pytest.mark.parametrize(("cron", "tz", "interval", "strategy", "says"), [
    ("* * *", "UTC", None, "full", "Invalid cron"),
    ("*/5 * * * * *", "UTC", None, "full", "has 6 fields, sfduck takes exactly five.*seconds"),
    ("0 0 * * * *", "UTC", None, "full", "has 6 fields, sfduck takes exactly five"),
    ("@hourly", "UTC", None, "full", "has 1 field, sfduck takes exactly five"),
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


def test_five_fields_are_accepted_with_any_spacing() -> None:
    validate_timing("*/15  9-17 * *\tMON-FRI", "UTC", None, "full")
    validate_timing("* * * * *", "UTC", None, "full")


def test_the_retention_cron_takes_five_fields_too(tmp_path) -> None:
    with pytest.raises(ConfigError, match="SFDUCK_LAKE_RETENTION_SCHEDULE .* has 6 fields"):
        load_settings({"SFDUCK_LAKE_RETENTION_SCHEDULE": "*/5 * * * * *"}, dotenv_path=tmp_path / "none.env",
                      secrets_path=tmp_path / "none.toml")


@pytest.mark.parametrize("timing", [{"cron": "*/5 * * * * *"}, {"interval_s": 5}, {"cron": "* * * * *"}])
def test_the_next_run_is_never_sooner_than_the_minimum_after_the_last(timing: dict) -> None:
    """Whatever timing a stored row holds, the next due time keeps MIN_INTERVAL_S after the last run."""
    last = dt.datetime(2026, 12, 7, 9, 0, 30, tzinfo=dt.UTC)
    schedule = Schedule("t", "S", "T", "full", True, last_run_at=last, **timing)
    assert schedule.next_after(last) == last + dt.timedelta(seconds=MIN_INTERVAL_S)
    assert schedule.earliest_run == last + dt.timedelta(seconds=MIN_INTERVAL_S)
    never_ran = Schedule("t", "S", "T", "full", True, cron="0 * * * *")
    assert never_ran.next_after(last) == dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)


def test_a_chore_runs_at_most_once_a_minute_whatever_its_cron() -> None:
    runs = []
    chore = Chore("x", "*/5 * * * * *", lambda: runs.append(1))
    moment = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    due = []
    for step in range(60):  # five minutes in 5 s steps
        if chore.due(moment + dt.timedelta(seconds=5 * step)):
            due.append(step * 5)
    assert due == [60, 120, 180, 240]
