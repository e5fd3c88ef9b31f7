"""Syncs running in background threads, for front ends that must stay responsive (the dashboard,
the HTTP API and the scheduler, which share one of these per process).

A Streamlit script is re-run on every click, which would abort a sync running inside it; so the
sync runs in a thread and the caller polls `BackgroundSyncs.get(sync_id)` for the latest progress.
Validation and the "already running" check happen in the caller's thread, so errors show at once.
At most `max_parallel` syncs move data at a time: the others wait their turn as `pending` jobs
(phase "queued"), because each one holds a Snowflake session, a download folder and DuckDB memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sfduck_core.engine import SyncEngine, SyncRequest, SyncRun
from sfduck_core.errors import SfduckError, SyncCancelledError
from sfduck_core.progress import SyncProgress

DEFAULT_MAX_PARALLEL_SYNCS = 2
SHUTDOWN_REASON = "Cancelled: the server was stopping; the table was left as it was before the sync."


@dataclass
class BackgroundSync:
    sync_id: str
    request: SyncRequest
    progress: SyncProgress
    thread: threading.Thread | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False  # ended by a cancel, the time limit or a shutdown, not by a fault
    finished: threading.Event = field(default_factory=threading.Event)
    job: dict[str, Any] | None = None  # its job row while it runs (read at start and once running)
    run: SyncRun | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return not self.finished.is_set()


class BackgroundSyncs:
    """Process-wide registry and executor of background syncs."""

    def __init__(self, engine: SyncEngine, keep_finished: int = 50,
                 max_parallel: int = DEFAULT_MAX_PARALLEL_SYNCS):
        self.engine = engine
        self.keep_finished = keep_finished
        self.max_parallel = max(1, max_parallel)
        self._slots = threading.BoundedSemaphore(self.max_parallel)
        self._syncs: dict[str, BackgroundSync] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self, request: SyncRequest) -> BackgroundSync:
        """Create the job now (raising on bad input or a running sync), then run it in a thread
        as soon as a slot is free."""
        if self._closed:
            raise SfduckError("sfduck is shutting down; start the sync again once it is back.")
        holder: dict[str, BackgroundSync] = {}

        def on_progress(p: SyncProgress) -> None:
            if (bg := holder.get("bg")) is not None:
                # its status changed: running (its started_at), waiting for the data file, or back
                if bg.job is not None and ((bg.job["status"] == "pending" and p.phase != "queued")
                                           or p.phase == "waiting" or bg.job["status"] == "waiting"):
                    bg.job = self.engine.store.get_job(bg.sync_id)
                bg.progress = p

        run = self.engine.prepare(request, on_progress, queued=True)
        bg = BackgroundSync(run.sync_id, request, run.progress.advance(phase="queued",
                                                                        message="Waiting for a free sync slot"))
        bg.job = self.engine.store.get_job(run.sync_id)
        bg.run = run
        holder["bg"] = bg
        bg.thread = threading.Thread(target=self._run, args=(bg, run), name=f"sfduck-sync-{run.sync_id[:8]}",
                                     daemon=True)
        with self._lock:
            self._syncs[run.sync_id] = bg
            self._prune()
        bg.thread.start()
        return bg

    def _run(self, bg: BackgroundSync, run: SyncRun) -> None:
        acquired = False
        try:
            # wait for a slot, but stop waiting when the queued job is cancelled
            while not (acquired := self._slots.acquire(timeout=0.5)):
                if run.stop_reason(fresh=True):
                    break
            bg.result = run.run()
        except Exception as exc:  # the job row already records it; keep the message for the caller
            bg.error = str(exc)
            bg.cancelled = isinstance(exc, SyncCancelledError)
        finally:
            if acquired:
                self._slots.release()
            bg.finished.set()

    def _prune(self) -> None:
        """Forget the oldest finished syncs so a long-lived process does not grow; their jobs stay
        in the history."""
        finished = [sid for sid, bg in self._syncs.items() if not bg.running]
        for sync_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._syncs[sync_id]

    def get(self, sync_id: str) -> BackgroundSync | None:
        with self._lock:
            return self._syncs.get(sync_id)

    def all(self) -> list[BackgroundSync]:
        with self._lock:
            return list(self._syncs.values())

    def running(self) -> list[BackgroundSync]:
        return [bg for bg in self.all() if bg.running]

    def shutdown(self, timeout_s: float = 20.0) -> list[str]:
        """Refuse new syncs, stop the running ones and wait (bounded) for them to end; their jobs
        end `cancelled` saying the server was stopping (not an admin's cancel), with the tables as
        they were. Returns the ids still running at the deadline."""
        self._closed = True
        running = self.running()
        for bg in running:
            if bg.run is not None:  # in this process: no write to a file that may be busy
                bg.run.stop(SHUTDOWN_REASON)
        deadline = time.monotonic() + timeout_s
        for bg in running:
            bg.finished.wait(max(0.0, deadline - time.monotonic()))
        return [bg.sync_id for bg in running if bg.running]
