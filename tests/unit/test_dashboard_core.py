"""The board's, History's and the shared look's pure rules: statuses, units, calendar axes, phases."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from sfduck_core.board import BOARD_STATUSES, BoardRow, filter_rows, status_counts, time_left_s
from sfduck_core.history import DAY_MS, bar_middles, date_axis, job_fields, phase_timeline
from sfduck_core.humanize import (
    bytes_unit,
    duration_unit,
    human_bytes,
    human_duration,
    human_interval,
    relative_time,
)
from sfduck_core.job_status import JOB_STATUSES
from sfduck_core.schedules import Schedule
from sfduck_ui import status as look

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 7, 18, 0, tzinfo=dt.UTC)


def test_every_status_has_one_style_and_its_colour_is_the_themes() -> None:
    assert set(JOB_STATUSES) | {"never", "paused", "skipped"} <= set(BOARD_STATUSES)
    assert set(BOARD_STATUSES) <= set(look.STYLES)  # a new job status (e.g. skipped) must get a look
    theme = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["theme"]
    for name, hex_value in look.COLORS.items():
        assert theme[f"{name}Color"].upper() == hex_value.upper(), name
    # one colour per status, but `waiting` (for the DuckDB file) is queued's: both start by themselves
    by_color = [look.style(s).color for s in BOARD_STATUSES if s != "waiting"]
    assert len(set(by_color)) == len(by_color), "two statuses share a colour"
    assert look.style("waiting").color == look.style("pending").color
    assert len({look.label(s) for s in BOARD_STATUSES}) == len(BOARD_STATUSES)
    assert len({look.style(s).icon for s in BOARD_STATUSES}) == len(BOARD_STATUSES)
    assert look.chart_colors()["failed"] == look.COLORS["red"]


def row(table: str, status: str, schema: str = "S") -> BoardRow:
    return BoardRow(table, schema, table, status)


def test_counts_follow_board_order_and_filters_combine() -> None:
    rows = [row("A", "completed"), row("B", "failed"), row("C", "failed", "T"), row("D", "never")]
    assert list(status_counts(rows).items()) == [("failed", 2), ("completed", 1), ("never", 1)]
    assert [r.table_name for r in filter_rows(rows, ["failed"], ["T"])] == ["C"]
    assert [r.table_name for r in filter_rows(rows)] == ["A", "B", "C", "D"]
    assert filter_rows(rows, ["skipped"]) == []


def test_time_left_is_a_straight_line_estimate_only_once_there_is_progress() -> None:
    assert time_left_s(0.25, 10.0) == pytest.approx(30.0)
    assert time_left_s(0.01, 10.0) is None and time_left_s(None, 10.0) is None and time_left_s(0.5, None) is None
    assert time_left_s(1.0, 10.0) == 0.0


def test_error_line_is_the_first_line() -> None:
    r = BoardRow("t", "S", "T", "failed", last_error="first\nsecond")
    assert r.error_line == "first"


@pytest.mark.parametrize(("value", "text"), [(0, "0 B"), (1536, "1.5 KB"), (5 * 1024**2, "5.0 MB"),
                                             (3 * 1024**3, "3.0 GB"), (None, "?")])
def test_sizes(value: int | None, text: str) -> None:
    assert human_bytes(value) == text


def test_units_for_axes() -> None:
    assert bytes_unit(5 * 1024**3) == (1024**3, "GB") and bytes_unit(10) == (1, "B")
    assert duration_unit(30) == (1, "s") and duration_unit(600) == (60, "min") and duration_unit(9000) == (3600, "h")
    assert [human_duration(s) for s in (0.42, 42, 75, 7500, 200000)] == [
        "0.4 s", "42 s", "1 min 15 s", "2 h 5 min", "2 days 7 h"]


def test_times_relative_and_intervals_in_their_unit() -> None:
    assert relative_time(NOW - dt.timedelta(minutes=5), NOW) == "5 min ago"
    assert relative_time(NOW + dt.timedelta(hours=3), NOW) == "in 3 h"
    assert relative_time(NOW - dt.timedelta(seconds=5), NOW) == "just now"
    assert relative_time(None, NOW) == "never"
    assert [human_interval(s) for s in (900, 7200, 86400, 90)] == ["15 min", "2 h", "1 day", "90 s"]


def test_an_interval_schedule_reads_in_minutes_with_its_next_three_runs() -> None:
    schedule = Schedule("t", "S", "T", "full", True, interval_s=900, next_run_at=NOW + dt.timedelta(minutes=5))
    assert schedule.when == "every 15 min"
    assert schedule.next_runs(NOW) == [NOW + dt.timedelta(minutes=m) for m in (5, 20, 35)]
    cron = Schedule("t", "S", "T", "full", True, cron="0 6 * * *")
    assert cron.next_runs(NOW) == [dt.datetime(2026, 12, d, 6, tzinfo=dt.UTC) for d in (8, 9, 10)]


def test_one_day_is_one_bucket_with_one_tick_labelled_by_its_date() -> None:
    day = dt.date(2026, 12, 7)
    axis = date_axis(day, day, "day")
    assert axis.range == ("2026-12-07", "2026-12-08") and axis.dtick == DAY_MS and axis.period_labels
    assert axis.tickformat == "%b %d"  # a date, never a time of day such as 23:59:59.9995


def test_ninety_days_get_whole_day_ticks_at_most_twelve() -> None:
    until = dt.date(2026, 12, 7)
    axis = date_axis(until - dt.timedelta(days=89), until, "day")
    assert isinstance(axis.dtick, int) and axis.dtick % DAY_MS == 0
    assert 90 * DAY_MS / axis.dtick <= 12 and not axis.period_labels
    weeks = date_axis(dt.date(2026, 1, 1), until, "week")
    assert weeks.range[0] == "2025-12-29" and weeks.dtick % (7 * DAY_MS) == 0  # Mondays
    months = date_axis(dt.date(2024, 1, 15), until, "month")
    assert months.range == ("2024-01-01", "2027-01-01") and months.dtick == "M3" and months.tickformat == "%b %Y"


def test_bars_sit_in_the_middle_of_their_day() -> None:
    middles, width = bar_middles(pd.Series(pd.to_datetime(["2026-12-07"])), "day")
    assert middles.iloc[0] == pd.Timestamp("2026-12-07 12:00") and width == pytest.approx(0.8 * DAY_MS)


def test_phases_run_end_to_end_and_merge_takes_the_rest() -> None:
    job = {"strategy": "incremental", "stats": {"unload_s": 2.0, "download_s": 1.0, "load_s": 0.5, "duration_s": 4.0}}
    assert phase_timeline(job) == [("unload", 0.0, 2.0), ("download", 2.0, 1.0), ("load", 3.0, 0.5),
                                   ("merge", 3.5, 0.5)]
    assert phase_timeline({"strategy": "full", "stats": {"skipped": True, "duration_s": 0.2}}) == []


def test_job_fields_are_labelled_and_readable() -> None:
    job = {"sync_id": "abc", "schema_name": "S", "table_name": "T", "status": "completed", "strategy": "full",
           "transport": "stage", "trigger": "api", "started_by": "admin", "created_at": "2026-12-07T18:00:00+00:00",
           "completed_at": "2026-12-07T18:01:15+00:00", "error_message": None,
           "stats": {"rows_processed": 1234567, "bytes_transferred": 5 * 1024**2, "duration_s": 75}}
    fields = dict(job_fields(job))
    assert fields["Rows processed"] == "1,234,567" and fields["Data transferred"] == "5.0 MB"
    assert fields["Duration"] == "1 min 15 s" and fields["Ended at"] == "2026-12-07 18:01:15 UTC"
    assert "Error" not in fields and fields["Sync id"] == "abc"


def test_a_watermark_reads_as_its_key_and_value() -> None:
    from sfduck_core.history import job_fields
    mark = {"column": "UPDATED_AT", "duckdb_type": "TIMESTAMP_NS", "snowflake_type": "TIMESTAMP_NTZ(9)",
            "value": "2026-12-07 20:34:05.369854"}
    fields = dict(job_fields({"schema_name": "S", "table_name": "T", "status": "completed",
                              "stats": {"watermark_after": mark}}))
    assert fields["Watermark after"] == "UPDATED_AT = 2026-12-07 20:34:05.369854"
