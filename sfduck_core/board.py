"""The status board: one row per registered table saying how fresh it is, what runs next and
what went wrong, computed from the metadata in one read so the home page stays fast.

A board status is a job status (`sfduck_core.store.JOB_STATUSES`) or one of two that only a table
has: `never` (registered, never synced) and `paused` (its schedule is switched off or paused itself
after failures). A sync that found nothing changed is `skipped`, a job status of its own (the
store's migration renamed the older files' "completed with `skipped` in its stats").
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from sfduck_core.job_status import ACTIVE_JOB_STATUSES, JOB_STATUSES, SUCCESS_STATUSES
from sfduck_core.progress import SyncProgress
from sfduck_core.schedules import Schedule
from sfduck_core.store import Store

NEVER, PAUSED, SKIPPED = "never", "paused", "skipped"
ACTIVE_STATUSES = ACTIVE_JOB_STATUSES
# every status a board row can have, in the order the counts are shown: what needs a look first
BOARD_STATUSES: tuple[str, ...] = tuple(dict.fromkeys(
    ("running", "waiting", "pending", "failed", "cancelled", PAUSED, SKIPPED, "completed", NEVER, *JOB_STATUSES)))

@dataclass(frozen=True)
class BoardRow:
    table_id: str
    schema_name: str
    table_name: str
    status: str  # one of BOARD_STATUSES
    last_sync_id: str | None = None
    last_ended_at: dt.datetime | None = None  # when the most recent finished sync ended
    rows: int | None = None  # rows in the synced copy after its last sync
    next_run_at: dt.datetime | None = None  # None: no schedule, or a paused one
    schedule: str | None = None  # how the schedule reads ("every 15 min"), None: none
    paused_reason: str | None = None
    last_error: str | None = None  # the latest job's error, when it did not complete
    error_sync_id: str | None = None
    incremental_key: str | None = None
    waiting_for: str | None = None  # a `waiting` job's message: the process holding the DuckDB file

    @property
    def default_strategy(self) -> str:
        """What a one-click sync does: incremental when the table has a key for it, else full."""
        return "incremental" if self.incremental_key else "full"

    @property
    def label(self) -> str:
        return f"{self.schema_name}.{self.table_name}"

    @property
    def error_line(self) -> str | None:
        """The error's first line, for a one-line cell; the whole text is one click away."""
        if not self.last_error:
            return None
        return self.last_error.strip().splitlines()[0]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


def board_rows(store: Store, schedules: Iterable[Schedule]) -> list[BoardRow]:
    """Every active registration with its last sync, last end, rows, schedule and last error."""
    by_table = {s.table_id: s for s in schedules}
    rows = [(r["table_id"], r["schema_name"], r["table_name"], r["incremental_key"], r["last_sync_id"],
             r["last_status"], r["row_count"], r["error_message"], r["last_end"]) for r in store.metadata.reports.board()]
    out = []
    for table_id, schema, table, incremental_key, last_id, last_status, row_count, error, last_end in rows:
        schedule = by_table.get(table_id)
        status = last_status or NEVER
        if status not in ACTIVE_STATUSES and schedule is not None and not schedule.enabled:
            status = PAUSED
        failed = last_status not in (None, *SUCCESS_STATUSES, *ACTIVE_STATUSES)
        out.append(BoardRow(
            table_id=table_id, schema_name=schema, table_name=table, status=status, last_sync_id=last_id,
            last_ended_at=_aware(last_end), rows=row_count,
            next_run_at=_aware(schedule.next_run_at) if schedule and schedule.enabled else None,
            schedule=schedule.when if schedule else None,
            paused_reason=schedule.paused_reason if schedule else None,
            last_error=error if failed else None, error_sync_id=last_id if failed and error else None,
            incremental_key=incremental_key, waiting_for=error if last_status == "waiting" else None))
    return out


def with_live_syncs(rows: list[BoardRow], running: Mapping[tuple[str, str], object]) -> list[BoardRow]:
    """Rows whose table this process is syncing right now say `running`, even before the metadata
    does (a sync queued for a slot is `pending`)."""
    return [replace(r, status="running") if (r.schema_name, r.table_name) in running and r.status not in
            ACTIVE_STATUSES else r for r in rows]


def status_counts(rows: Iterable[BoardRow]) -> dict[str, int]:
    """How many tables have each status, in BOARD_STATUSES order, zeros left out."""
    counts = Counter(r.status for r in rows)
    return {status: counts[status] for status in BOARD_STATUSES if counts[status]}


def filter_rows(rows: Iterable[BoardRow], statuses: Iterable[str] = (), schemas: Iterable[str] = ()) -> list[BoardRow]:
    """The rows with any of `statuses` in any of `schemas` (an empty choice keeps everything)."""
    wanted, in_schemas = set(statuses), set(schemas)
    return [r for r in rows if (not wanted or r.status in wanted) and (not in_schemas or r.schema_name in in_schemas)]


@dataclass(frozen=True)
class LiveProgress:
    """A running sync as the board shows it: where it is and how long it may still take."""

    phase: str
    rows_done: int
    rows_total: int | None
    bytes_done: int
    fraction: float | None
    elapsed_s: float | None
    time_left_s: float | None


def time_left_s(fraction: float | None, elapsed_s: float | None) -> float | None:
    """A straight-line estimate from the share done so far; None until there is something to go on
    (under 2 % done, or no start time yet)."""
    if fraction is None or elapsed_s is None or fraction < 0.02 or elapsed_s <= 0:
        return None
    if fraction >= 1:
        return 0.0
    return elapsed_s * (1 - fraction) / fraction


def live_progress(progress: SyncProgress, started_at: dt.datetime | None, now: dt.datetime) -> LiveProgress:
    elapsed = (now - started_at).total_seconds() if started_at is not None else None
    fraction = progress.fraction
    return LiveProgress(progress.phase, progress.rows_done, progress.rows_total, progress.bytes_done, fraction,
                        elapsed, time_left_s(fraction, elapsed))
