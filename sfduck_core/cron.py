"""Cron expressions as sfduck reads them: five fields, and when one falls due next.

cronsim (the parser) also reads six fields, the first being seconds, so `*/5 * * * * *` would fall
due every 5 s and `0 0 * * * *` would mean "hourly" rather than what a five-field reader expects.
Every cron sfduck takes (schedules, SFDUCK_LAKE_RETENTION_SCHEDULE) goes through `check_cron`.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

FIELDS = "minute hour day-of-month month day-of-week"


class CronError(ValueError):
    """Why a text is not a cron expression sfduck accepts (a phrase, without the expression)."""


def check_cron(text: str, zone: dt.tzinfo = dt.UTC) -> None:
    """Refuse anything but five fields that cronsim parses and that falls due at least once."""
    fields = text.split()
    if len(fields) != 5:
        seconds = " (a sixth field would be seconds, which sfduck does not take: nothing runs more often " \
                  "than once a minute)" if len(fields) == 6 else ""
        raise CronError(f"it has {len(fields)} field{'' if len(fields) == 1 else 's'}, sfduck takes exactly five: "
                        f"{FIELDS}{seconds}")
    try:
        next(iter(CronSim(text, dt.datetime.now(zone))))
    except (CronSimError, StopIteration) as exc:
        raise CronError(str(exc) or "it never falls due") from None


def next_cron_time(cron: str, moment: dt.datetime, timezone: str = "UTC") -> dt.datetime:
    """The first time `cron` falls due strictly after `moment`, read in `timezone`, in UTC."""
    return next(iter(CronSim(cron, moment.astimezone(ZoneInfo(timezone))))).astimezone(dt.UTC)
