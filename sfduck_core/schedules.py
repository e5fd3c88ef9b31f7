"""Syncs on a schedule: a cron expression in a time zone, or a fixed interval, per registered table.

The scheduler lives in the server process (its lifespan starts and stops it) and starts syncs
through the same executor as the dashboard and the API, so a table never has two syncs at once: a
run that falls due while one is running is recorded as skipped. Due times are kept in the
metadata, so runs missed while the server was down become one catch-up run at start, not a
backlog. A schedule whose runs keep failing pauses itself after `failure_limit` failures in a row
and says why (a broken table should not page someone every 15 minutes for a week).
The clock is injected, so every rule is tested without waiting.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sfduck_core.cron import CronError, check_cron, next_cron_time
from sfduck_core.engine import STRATEGIES, SyncRequest
from sfduck_core.errors import JobNotFoundError, SfduckError, SyncAlreadyRunningError
from sfduck_core.humanize import human_interval
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.metadata.schedule_rows import SCHEDULE_COLUMNS
from sfduck_core.store import Registration, Store, now

MIN_INTERVAL_S = 60
SCHEDULER_USER = "scheduler"
_log = logging.getLogger("sfduck.schedules")
Clock = Callable[[], dt.datetime]
StartSync = Callable[[SyncRequest], Any]  # returns something with a `sync_id`


@dataclass(frozen=True)
class Schedule:
    table_id: str
    schema_name: str
    table_name: str
    strategy: str
    enabled: bool
    cron: str | None = None
    timezone: str = "UTC"
    interval_s: int | None = None
    consecutive_failures: int = 0
    paused_reason: str | None = None
    next_run_at: dt.datetime | None = None
    last_run_at: dt.datetime | None = None
    last_sync_id: str | None = None
    last_outcome: str | None = None
    updated_by: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.schema_name}.{self.table_name}"

    @property
    def when(self) -> str:
        """How a person reads the timing: `cron 0 6 * * * (Europe/Paris)`, or an interval in the unit it
        was entered in (`every 15 min`, `every 2 h`)."""
        return f"cron {self.cron} ({self.timezone})" if self.cron else f"every {human_interval(self.interval_s or 0)}"

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first due time strictly after `moment`, in UTC, and never sooner than MIN_INTERVAL_S
        after the last run, whatever the stored timing says (a row written before validation was
        this strict, or by hand)."""
        if self.cron:
            due = next_cron_time(self.cron, moment, self.timezone)
        else:
            due = moment + dt.timedelta(seconds=self.interval_s or MIN_INTERVAL_S)
        return max(due, self.earliest_run) if self.earliest_run else due

    @property
    def earliest_run(self) -> dt.datetime | None:
        """The first moment the next run may start: MIN_INTERVAL_S after the last one started."""
        return self.last_run_at + dt.timedelta(seconds=MIN_INTERVAL_S) if self.last_run_at else None

    def next_runs(self, moment: dt.datetime, count: int = 3) -> list[dt.datetime]:
        """The next `count` due times after `moment` (the first is `next_run_at` when it is later)."""
        first = self.next_run_at if self.next_run_at and self.next_run_at > moment else self.next_after(moment)
        runs = [first]
        while len(runs) < count:
            runs.append(self.next_after(runs[-1]))
        return runs

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key, value in out.items():
            if isinstance(value, dt.datetime):
                out[key] = value.isoformat()
        out["when"] = self.when
        return out


def validate_timing(cron: str | None, timezone: str, interval_s: int | None, strategy: str) -> None:
    """Clear errors for every bad combination, before anything is stored."""
    if strategy not in STRATEGIES:
        raise SfduckError(f"Unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
    if bool(cron) == bool(interval_s):
        raise SfduckError("Give a schedule either a cron expression or an interval in seconds, not both.")
    if interval_s is not None and interval_s < MIN_INTERVAL_S:
        raise SfduckError(f"An interval must be at least {MIN_INTERVAL_S} seconds, got {interval_s}.")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise SfduckError(f"Unknown time zone {timezone!r}; use an IANA name such as 'UTC' or "
                          "'Europe/Paris'.") from None
    if cron:
        if len(cron) > 200 or "\x00" in cron:
            raise SfduckError("That cron expression is too long or holds a NUL character.")
        try:
            check_cron(cron, zone)
        except CronError as exc:
            raise SfduckError(f"Invalid cron expression {cron!r}: {exc}. "
                              "Use five fields: minute hour day-of-month month day-of-week.") from None


class ScheduleStore:
    """The schedules in the metadata database (joined with the registrations for their names)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rows = store.metadata.schedules

    def list(self) -> list[Schedule]:
        return [Schedule(**row) for row in self.rows.select()]

    def get(self, table_id: str) -> Schedule | None:
        found = self.rows.select(table_id)
        return Schedule(**found[0]) if found else None

    def save(self, reg: Registration, *, cron: str | None, timezone: str, interval_s: int | None,
             strategy: str, enabled: bool, actor: str | None, clock: Clock = now) -> Schedule:
        """Create or replace the table's schedule; its next run is computed from now."""
        cron = (cron or "").strip() or None
        timezone = (timezone or "UTC").strip()
        validate_timing(cron, timezone, interval_s, strategy)
        if reg.status != "active":
            raise SfduckError(f"{reg.schema_name}.{reg.table_name} is not registered; register it first.")
        draft = Schedule(reg.table_id, reg.schema_name, reg.table_name, strategy, enabled, cron, timezone, interval_s)
        moment = clock()
        values = {"table_id": reg.table_id, "cron": cron, "timezone": timezone, "interval_s": interval_s,
                  "strategy": strategy, "enabled": enabled, "consecutive_failures": 0, "paused_reason": None,
                  "next_run_at": draft.next_after(moment), "updated_by": actor, "updated_at": moment}
        self.rows.replace(values)
        self.store.audit("schedule.save", actor, reg, {k: v for k, v in values.items() if k != "updated_at"})
        saved = self.get(reg.table_id)
        assert saved is not None
        return saved

    def set_enabled(self, table_id: str, enabled: bool, actor: str | None, clock: Clock = now) -> Schedule:
        """Pause or resume; resuming clears the failure count and plans the next run from now."""
        current = self.require(table_id)
        moment = clock()
        self.rows.update(table_id, enabled=enabled, paused_reason=None, consecutive_failures=0,
                         next_run_at=current.next_after(moment), updated_by=actor, updated_at=moment)
        self.store.audit("schedule.resume" if enabled else "schedule.pause", actor,
                         self._registration(current), None)
        return self.require(table_id)

    def delete(self, table_id: str, actor: str | None) -> None:
        current = self.require(table_id)
        self.rows.delete(table_id)
        self.store.audit("schedule.delete", actor, self._registration(current), None)

    def require(self, table_id: str) -> Schedule:
        found = self.get(table_id)
        if found is None:
            raise JobNotFoundError(f"No schedule for table id {table_id!r}.")
        return found

    def update(self, table_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(SCHEDULE_COLUMNS)
        assert not unknown, unknown
        self.rows.update(table_id, **fields)

    @staticmethod
    def _registration(schedule: Schedule) -> Registration:
        return Registration(schedule.table_id, schedule.schema_name, schedule.table_name, "active")


@dataclass
class Chore:
    """Server housekeeping on a cron in UTC (a lake's retention). Its due time lives in memory: the
    first run is the first due time after the server starts, a run missed while it was down is not
    caught up (the next one does the same work)."""

    name: str
    cron: str
    action: Callable[[], Any]
    next_at: dt.datetime | None = None

    def due(self, moment: dt.datetime) -> bool:
        """Whether to run now; schedules the following run either way."""
        if self.next_at is not None and self.next_at > moment:
            return False
        first = self.next_at is None
        self.next_at = max(next_cron_time(self.cron, moment), moment + dt.timedelta(seconds=MIN_INTERVAL_S))
        return not first


class Scheduler:
    """Starts due runs and chores; learns runs' outcomes from the engine's job-end listener."""

    def __init__(self, schedules: ScheduleStore, start_sync: StartSync, *, failure_limit: int = 5,
                 on_pause: Callable[[Schedule, str], None] | None = None, clock: Clock = now,
                 poll_s: float = 5.0, chores: Sequence[Chore] = ()) -> None:
        self.chores = list(chores)
        self.schedules = schedules
        self.start_sync = start_sync
        self.failure_limit = failure_limit
        self.on_pause = on_pause
        self.clock = clock
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def tick(self) -> list[tuple[Schedule, str]]:
        """Start every enabled schedule that is due; each gets one run however many it missed."""
        moment = self.clock()
        outcomes = []
        with self._lock:
            for schedule in self.schedules.list():
                if not schedule.enabled or schedule.next_run_at is None or schedule.next_run_at > moment:
                    continue
                if schedule.earliest_run is not None and schedule.earliest_run > moment:  # too soon after the last
                    self.schedules.update(schedule.table_id, next_run_at=schedule.next_after(moment))
                    continue
                outcomes.append((schedule, self._run(schedule, moment)))
        for chore in self.chores:
            if chore.due(moment):
                try:
                    _log.info("%s: %s", chore.name, chore.action())
                except Exception:  # housekeeping never stops the schedules; the next run tries again
                    _log.exception("%s failed", chore.name)
        return outcomes

    def _run(self, schedule: Schedule, moment: dt.datetime) -> str:
        fields: dict[str, Any] = {"next_run_at": replace(schedule, last_run_at=moment).next_after(moment),
                                  "last_run_at": moment}
        request = SyncRequest(schedule.schema_name, schedule.table_name, strategy=schedule.strategy,
                              trigger="schedule", started_by=SCHEDULER_USER)
        try:
            started = self.start_sync(request)
            fields.update(last_sync_id=started.sync_id, last_outcome="started")
            outcome = "started"
        except SyncAlreadyRunningError as exc:
            outcome = "skipped"
            fields.update(last_outcome=f"skipped: {exc}")
        except SfduckError as exc:  # could not even start (unregistered, bad key...): a failure too
            outcome = "failed"
            fields.update(last_outcome=f"failed: {exc}")
            self._count_failure(schedule, str(exc), fields)
        self.schedules.update(schedule.table_id, **fields)
        _log.info("schedule of %s: %s", schedule.label, fields.get("last_outcome"))
        return outcome

    def job_ended(self, job: dict[str, Any]) -> None:
        """Count consecutive failures of scheduled runs; pause at the limit."""
        if job.get("trigger") != "schedule":
            return
        with self._lock:
            schedule = self.schedules.get(job["table_id"])
            if schedule is None or schedule.last_sync_id != job.get("sync_id"):
                return
            fields: dict[str, Any] = {"last_outcome": job["status"]}
            if job["status"] in SUCCESS_STATUSES:
                fields["consecutive_failures"] = 0
            elif job["status"] == "failed":
                self._count_failure(schedule, job.get("error_message") or "failed", fields)
            self.schedules.update(schedule.table_id, **fields)

    def _count_failure(self, schedule: Schedule, message: str, fields: dict[str, Any]) -> None:
        failures = schedule.consecutive_failures + 1
        fields["consecutive_failures"] = failures
        if failures >= self.failure_limit:
            reason = (f"Paused after {failures} consecutive failed runs; the last one: {message} "
                      "Fix the cause, then resume the schedule.")
            fields.update(enabled=False, paused_reason=reason)
            if self.on_pause is not None:
                self.on_pause(schedule, reason)

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sfduck-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a busy file or a bug: log it and try again at the next poll
                _log.exception("scheduler tick failed")
            self._stop.wait(self.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
