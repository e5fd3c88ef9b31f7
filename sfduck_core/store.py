"""sfduck's one object for the front ends: the synced tables (a Storage: a DuckDB file or a
DuckLake) and sfduck's records of them (the metadata database: registrations, jobs, statuses).

The two are separate databases, so a job's end spans both: the data target notes each committed
sync in the data's own transaction (Storage.record_commit), the metadata records the job after the
data's COMMIT, and a job whose process died is settled from the data's note (`_reap_dead_jobs`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psutil
from sqlalchemy.exc import SQLAlchemyError

from sfduck_core.config import Target
from sfduck_core.errors import ConfigError, SfduckError, StoreBusyError, TableNotFoundError
from sfduck_core.files import private_dir
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.metadata import JobQuery, MetadataDatabase, Registration, default_metadata_url
from sfduck_core.metadata.records import now, to_json
from sfduck_core.storage import DONT_WAIT, open_storage, wait_policy, waiting_for_data
from sfduck_core.suggest import did_you_mean
from sfduck_core.upgrade import upgrade_in_place

__all__ = ["JobQuery", "LakeSnapshot", "Registration", "Store", "new_sync_id", "now"]

_log = logging.getLogger(__name__)
_prepared: set[str] = set()
_prepare_lock = threading.Lock()
# Syncs running in this process: a `running` job with our pid that is not in here is dead.
ACTIVE_SYNCS: set[str] = set()
# Failures this process could not write down (a full disk): recorded when the job is reaped.
UNRECORDED_FAILURES: dict[str, str] = {}
_job_lock = threading.Lock()


def new_sync_id() -> str:
    """A UUID version 7 (RFC 9562): the creation time in milliseconds, then random bits, so that
    ids sort in creation order (in the metadata's index as in the data's commit records)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 + 62 used
    value = ((millis & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 68) << 64
             | 0b10 << 62 | rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class LakeSnapshot:
    snapshot_id: int
    snapshot_time: dt.datetime
    table_id: str | None  # the table whose sync committed it; None: bookkeeping (job rows, registrations)


def process_start_mark(pid: int) -> float | None:
    """When `pid` started, in a unit no clock step can move: clock ticks since boot on Linux
    (field 22 of /proc/PID/stat), the wall-clock start time elsewhere. None: no such process.

    A wall-clock start time (psutil's create_time) moves when the clock is stepped, which made a
    live sync look like a dead one whose pid had been reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else _wall_clock_start(pid)
    except OSError:
        return _wall_clock_start(pid)
    return float(stat[stat.rindex(b")") + 2:].split()[19])  # after "pid (comm) ", field 3 is index 0


def _wall_clock_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class Store:
    """The synced tables (`storage`) and sfduck's records of them (`metadata`), for the front ends.

    One rule for data connections: a public method opens its own (one short operation, so other
    processes wait as little as possible); a method that takes part in a caller's transaction
    takes the connection as its first argument and never commits.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0, memory_limit: str = "256MB",
                 keep_warm_s: float = 0.0, target: Target | None = None, metadata_url: str | None = None):
        """`keep_warm_s`: how long the file stays open in this process after a use (a server's
        choice, see sfduck_core.storage); 0 closes it with the last connection. `target` a lake:
        `path` is then only the state folder's anchor (job notes, disk-space checks, the default
        metadata database). `metadata_url`: the metadata database (SFDUCK_METADATA_URL); by
        default a SQLite file beside `path`."""
        if target is None or target.path is not None:  # a DuckDB file, which `path` names
            target = Target("duckdb", path=Path(path))
        self.storage = open_storage(target, lock_timeout_s=lock_timeout_s, memory_limit=memory_limit,
                                    keep_warm_s=keep_warm_s)
        self.target = target
        self.path = self.storage.path or Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.memory_limit = memory_limit
        self.keep_warm_s = keep_warm_s
        # beside the DuckDB file (for a lake: the state folder that SFDUCK_DUCKDB_PATH names)
        self.notes_dir = Path(path).parent / "job-notes"
        self.metadata_url = metadata_url
        self.metadata = MetadataDatabase(metadata_url or default_metadata_url(Path(path).parent))
        self._upgrade_in_place()

    def _upgrade_in_place(self) -> None:
        """Copy the metadata an earlier release kept in the data target (see sfduck_core.upgrade),
        once per process. A target held by another process now is looked at by the next start
        (or the next Store of this process); a metadata database holding other rows refuses."""
        try:
            line = upgrade_in_place(self.storage, self.metadata)
        except StoreBusyError as exc:
            _log.warning("could not look for metadata of an earlier release in the %s yet: %s",
                         self.target.describe(), exc)
            return
        if line:
            print(line, file=sys.stderr)

    # --- connections -----------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the data target for one operation (see Storage.connect), its commit records
        prepared first (once per process): until then even a read takes a writer's turn."""
        prepared = self.storage.key in _prepared
        # a read nobody's sync waits for (a preview, housekeeping) answers at once when another
        # process holds the file, naming it (StoreBusyError), rather than keep a person waiting
        quick = read_only and wait_policy() is None
        with contextlib.ExitStack() as stack:
            with waiting_for_data(DONT_WAIT) if quick else contextlib.nullcontext():
                con = stack.enter_context(self.storage.connect(read_only=read_only and prepared))
            if not prepared:
                with _prepare_lock:
                    self.storage.prepare(con)
                    _prepared.add(self.storage.key)
            yield con

    def ping(self, wait_s: float = 2.0) -> None:
        """Read the metadata database, which every read of jobs and statuses uses (health checks);
        the data target is not opened: an analyst holding the file is not an outage."""
        del wait_s  # the metadata database answers at once or not at all
        self.metadata.ping()

    def data_held_by(self) -> str | None:
        """The other process holding the DuckDB file now ("python3 (pid 1234)"), or None; never
        waits (health checks: a held file is not an outage). A lake's readers never wait: None."""
        if self.storage.capabilities.readers_never_wait:
            return None
        try:
            with self.connect(read_only=True):
                return None
        except StoreBusyError as exc:
            return str(exc.holder) if exc.holder else "another process"

    # --- ownership -------------------------------------------------------------------------

    def claim_source(self, label: str) -> None:
        """Refuse to mix Snowflakes in one file: demo data beside an account's, or two accounts.

        A file that holds no registration yet (a fresh one, or one from before this check) is
        claimed by whoever uses it, so trying the demo first never locks out a real account."""
        other = self.metadata.registrations.claim_source(label)
        if other is None:
            return

        def name(x: str) -> str:
            return "the demo emulator" if x == "demo" else f"the Snowflake account {x!r}"

        raise ConfigError(
            f"The {self.target.describe()} holds tables from {name(other)}, but sfduck is configured for "
            f"{name(label)}. Point {self.storage.setting} at another "
            f"{self.storage.label} (or fix the configuration that was not found); nothing was changed."
        )

    # --- registrations (in the metadata database) -----------------------------------------------

    def get_registration(self, schema: str, table: str) -> Registration | None:
        return self.metadata.registrations.get(schema, table)

    def registration_by_id(self, table_id: str) -> Registration:
        return self.metadata.registrations.by_id(table_id)

    def require_active(self, schema: str, table: str) -> Registration:
        return self.metadata.registrations.require_active(schema, table)

    def table_history(self, schema: str, table: str) -> list[dict[str, Any]]:
        """A table's jobs, newest first; a table never registered nor synced is an error (a
        mistyped name is not an empty history)."""
        jobs = self.history(schema, table)
        if not jobs and self.get_registration(schema, table) is None:
            known = [f"{r.schema_name}.{r.table_name}" for r in self.list_registrations(include_inactive=True)]
            raise TableNotFoundError(f"{schema}.{table} was never registered, so it has no sync history."
                                     + did_you_mean(f"{schema}.{table}", known))
        return jobs

    def upsert_registration(self, schema: str, table: str, *, incremental_key: str | None,
                            primary_key: Sequence[str], detect_deletes: bool,
                            include_columns: Sequence[str], exclude_columns: Sequence[str]) -> Registration:
        """Register (or re-activate) a table; registering again only updates its settings."""
        return self.metadata.registrations.upsert(
            schema, table, incremental_key=incremental_key, primary_key=primary_key, detect_deletes=detect_deletes,
            include_columns=include_columns, exclude_columns=exclude_columns)

    def deactivate(self, schema: str, table: str) -> Registration:
        return self.metadata.registrations.deactivate(schema, table)

    def list_registrations(self, include_inactive: bool = False) -> list[Registration]:
        return self.metadata.registrations.list(include_inactive)

    def audit(self, action: str, actor: str | None, reg: Registration | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Record who changed what (registrations, schedules); never read back by sfduck itself."""
        self.metadata.registrations.audit(action, actor, reg, details)

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.metadata.registrations.audit_log(limit)

    # --- jobs (in the metadata database) -------------------------------------------------------

    def start_job(self, reg: Registration, strategy: str, transport: str, filter_sql: str | None, *,
                  trigger: str = "cli", started_by: str | None = None, queued: bool = False) -> str:
        """Insert a `running` job (`pending` when `queued` for an executor slot) unless one is
        already pending or running for this table (the metadata database refuses a second one)."""
        sync_id = new_sync_id()
        with _job_lock:
            self._reap_dead_jobs()
            ACTIVE_SYNCS.add(sync_id)
            try:
                self.metadata.jobs.start(reg, sync_id, strategy, transport, filter_sql, trigger=trigger,
                                         started_by=started_by, queued=queued, pid=os.getpid(),
                                         host=socket.gethostname(), process_started=process_start_mark(os.getpid()))
            except BaseException:
                ACTIVE_SYNCS.discard(sync_id)
                raise
        self._reserve_note(sync_id)
        return sync_id

    def mark_running(self, sync_id: str) -> None:
        """A queued job got its executor slot (a job already running is left as it is)."""
        self.metadata.jobs.mark_running(sync_id)

    def mark_waiting(self, sync_id: str, message: str) -> None:
        """The job waits for the data file another process holds (`message` names it)."""
        self.metadata.jobs.mark_waiting(sync_id, message)

    def mark_committed(self, con: duckdb.DuckDBPyConnection, reg: Registration, sync_id: str,
                       stats: dict[str, Any], transport: str, *, status: str = "completed",
                       **status_fields: Any) -> dict[str, Any]:
        """Inside the caller's data transaction, before its COMMIT: write down that this sync's
        data commits (Storage.record_commit), so a crash between the data's COMMIT and the
        metadata's write (complete_job) still settles the job as the success it was. A target
        that keeps versions also labels the commit with the sync_id, which is how the job finds
        its version. Returns what complete_job takes, as keyword arguments."""
        if status not in SUCCESS_STATUSES:
            raise ValueError(f"mark_committed records a success, not {status!r}")
        record = {"status": status, "stats": stats, "transport": transport, "status_fields": status_fields}
        if self.storage.capabilities.snapshots:
            self.storage.label_commit(con, sync_id, f"sfduck sync of {reg.schema_name}.{reg.table_name}")
        self.storage.record_commit(con, sync_id, reg.schema_name, reg.table_name, to_json(record))
        return {"stats": stats, "transport": transport, "status": status, **status_fields}

    def complete_job(self, reg: Registration, sync_id: str, stats: dict[str, Any], transport: str, *,
                     status: str = "completed", **status_fields: Any) -> None:
        """Record a success in the metadata (`completed`, or `skipped` when nothing had changed),
        after the data's COMMIT (a sync that changed data went through mark_committed first). In
        a target that keeps versions the job's stats name the one its commit made (`snapshot_id`)."""
        if self.storage.capabilities.snapshots and status == "completed":
            with self.connect(read_only=True) as con:
                snapshot = self.storage.sync_snapshots(con, [sync_id]).get(sync_id)
            if snapshot is not None:
                stats = {**stats, "snapshot_id": snapshot}
        self.metadata.jobs.complete(reg, sync_id, stats, transport, status=status, **status_fields)

    def request_cancel(self, sync_id: str) -> dict[str, Any]:
        """Ask a running sync to stop; it ends `cancelled` at its next check (within seconds)."""
        self.reap_dead_jobs()
        self.metadata.jobs.request_cancel(sync_id)
        job = self.get_job(sync_id)
        assert job is not None
        return job

    def cancel_requested(self, sync_id: str) -> bool:
        return self.metadata.jobs.cancel_requested(sync_id)

    def fail_job(self, reg: Registration, sync_id: str, message: str, stats: dict[str, Any],
                 status: str = "failed") -> None:
        """Record the failure; if even that fails (the disk that made the sync fail is still full),
        keep the message in this process, so the job is reaped with its real cause later."""
        try:
            self.metadata.jobs.fail(reg, sync_id, message, stats, status)
        except (SQLAlchemyError, OSError, SfduckError):
            UNRECORDED_FAILURES[sync_id] = message
            self._write_note(sync_id, message)

    def finish(self, sync_id: str) -> None:
        ACTIVE_SYNCS.discard(sync_id)
        if sync_id not in UNRECORDED_FAILURES:
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    # A failure that could not be written to the store (its disk was full) must outlive the process:
    # each job reserves a small file when it starts, and its message is written into that space,
    # which needs no free block; whoever reaps the job reads it there (see _reap_dead_jobs).
    NOTE_BYTES = 4096

    def _note(self, sync_id: str) -> Path:
        return self.notes_dir / f"{sync_id}.failure"

    def _reserve_note(self, sync_id: str) -> None:
        with contextlib.suppress(OSError):  # best effort: without it, a lost failure says "stopped"
            private_dir(self.notes_dir)
            fd = os.open(self._note(sync_id), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.NOTE_BYTES)
            finally:
                os.close(fd)

    def _write_note(self, sync_id: str, message: str) -> None:
        data = message.encode()[: self.NOTE_BYTES - 4].decode(errors="ignore").encode()
        with contextlib.suppress(OSError):
            fd = os.open(self._note(sync_id), os.O_WRONLY)  # never created here: its space is reserved
            try:
                os.pwrite(fd, data.ljust(self.NOTE_BYTES, b"\0"), 0)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_note(self, sync_id: str) -> str | None:
        try:
            text = self._note(sync_id).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            return None
        return text or None

    def _reap_dead_jobs(self) -> None:
        """Settle the jobs left pending or running by a process of this machine that died: from
        the data's own record (see record_commit), `completed` (or `skipped`) with its stats when
        its data committed, else `failed`, so it no longer blocks its table. The data target is
        opened only when there is such a job; when it cannot be read now (held by another
        process), the jobs wait for the next reaping rather than be settled blind."""
        me = socket.gethostname()
        dead = [job for job in self.metadata.jobs.unfinished()
                if job["host"] == me and not _job_alive(job["sync_id"], job["pid"], job["process_started"])]
        if not dead:
            return
        try:
            committed = self.committed_syncs([job["sync_id"] for job in dead])
        except StoreBusyError:
            return
        for job in dead:
            sync_id = job["sync_id"]
            record = committed.get(sync_id)
            if record is not None:
                reg = self.metadata.registrations.by_id(job["table_id"])
                self.complete_job(reg, sync_id, record["stats"], record["transport"], status=record["status"],
                                  **record["status_fields"])
            else:
                message = (UNRECORDED_FAILURES.get(sync_id) or self._read_note(sync_id)
                           or _stopped_message(job["pid"], job["trigger"]))
                self.metadata.jobs.settle_failed(sync_id, job["table_id"], message)
            UNRECORDED_FAILURES.pop(sync_id, None)
            with contextlib.suppress(OSError):
                self._note(sync_id).unlink(missing_ok=True)

    def reap_dead_jobs(self) -> None:
        with _job_lock:
            self._reap_dead_jobs()

    def get_job(self, sync_id: str) -> dict[str, Any] | None:
        return self.metadata.jobs.get(sync_id)

    def running_jobs(self) -> list[dict[str, Any]]:
        return self.metadata.jobs.running()

    def history(self, schema: str | None = None, table: str | None = None, limit: int = 1000) -> list[dict]:
        """Jobs, newest first, optionally for one table."""
        return self.metadata.jobs.history(schema, table, limit)

    def find_jobs(self, query: JobQuery, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of the jobs `query` selects, newest first, and how many it selects in all."""
        return self.metadata.jobs.find(query, limit, offset)

    def job_facets(self) -> dict[str, Any]:
        """The values the job filters can take (tables, statuses, triggers, users), for pickers."""
        return self.metadata.jobs.facets()

    def prune_jobs(self, older_than: dt.datetime) -> int:
        """Delete finished jobs created before `older_than` (retention); never a table's last
        success, which incremental syncs and skipping still read."""
        return self.metadata.jobs.prune(older_than)

    def sync_status(self, schema: str, table: str) -> dict[str, Any] | None:
        return self.metadata.jobs.sync_status(schema, table)

    # --- commit records (data target) ----------------------------------------------------------
    # The data target's own record of which syncs committed, written in the data's transaction:
    # the one fact the metadata database cannot know after a crash. (For the storage package.)

    def committed_syncs(self, sync_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """sync_id -> its commit record (see mark_committed), for those of `sync_ids` whose data committed."""
        if not sync_ids:
            return {}
        with self.connect(read_only=True) as con:
            return self.storage.committed_syncs(con, sync_ids)

    # --- lake retention --------------------------------------------------------------------

    def lake_snapshots(self) -> list[LakeSnapshot]:
        """Every snapshot of the lake, oldest first, with the table whose completed sync committed it
        (None: bookkeeping)."""
        self.storage.require("retention", "Retention")
        with self.connect(read_only=True) as con:
            snapshots = self.storage.snapshots(con)
            by_sync = self.storage.sync_snapshots(con)
        tables = self.metadata.jobs.tables_of(list(by_sync), status="completed") if by_sync else {}
        table_of = {snapshot: tables.get(sync_id) for sync_id, snapshot in by_sync.items()}
        return [LakeSnapshot(s.snapshot_id, s.snapshot_time, table_of.get(s.snapshot_id)) for s in snapshots]

    def expire_lake_snapshots(self, snapshot_ids: Sequence[int],
                              orphan_grace: dt.timedelta = dt.timedelta(hours=6)) -> dict[str, int]:
        """Expire these snapshots and delete the files only they used (see Storage.expire_snapshots);
        the jobs of expired snapshots no longer name them (`snapshot_id`)."""
        self.storage.require("retention", "Retention")
        wanted = {int(i) for i in snapshot_ids}
        with self.connect() as con:
            expired_syncs = [s for s, snap in self.storage.sync_snapshots(con).items() if snap in wanted]
            done = self.storage.expire_snapshots(con, snapshot_ids, orphan_grace)
        self.metadata.jobs.forget_snapshots(expired_syncs)
        return done

    # --- synced tables ---------------------------------------------------------------------

    def synced_tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every table sfduck has loaded, for previews; while another process
        holds the DuckDB file, those whose last success the metadata database records."""
        try:
            with self.connect(read_only=True) as con:
                return self.storage.synced_tables(con)
        except StoreBusyError:
            return self.metadata.jobs.synced_tables()


def _stopped_message(pid: int | None, trigger: str | None) -> str:
    """Why a job that nobody runs any more ended: the server or the command that ran it stopped."""
    who = "sfduck command" if trigger in (None, "cli") else "server"
    return (f"The {who} stopped during this sync (process {pid} ended before it finished); the table was "
            "left as it was before the sync, and it can be synced again.")


def _job_alive(sync_id: str, pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    mark = process_start_mark(pid)
    if mark is None:
        return False
    # a live process with another start mark reused the pid of the one that died
    same_process = started is None or abs(mark - started) < 1e-6
    if same_process and pid == os.getpid():
        return sync_id in ACTIVE_SYNCS
    return same_process
