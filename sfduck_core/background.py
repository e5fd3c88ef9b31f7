"""Syncs running in background threads, for front ends that must stay responsive (the dashboard).

A Streamlit script is re-run on every click, which would abort a sync running inside it; so the
sync runs in a thread and the page polls `BackgroundSyncs.get(sync_id)` for the latest progress.
Validation and the "already running" check happen in the caller's thread, so errors show at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SyncCancelledError
from sfduck_core.progress import SyncProgress


@dataclass
class BackgroundSync:
    sync_id: str
    request: SyncRequest
    progress: SyncProgress
    thread: threading.Thread | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False  # ended by a cancel or the time limit, not by a fault
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return not self.finished.is_set()


class BackgroundSyncs:
    """Process-wide registry of background syncs (one per dashboard process)."""

    def __init__(self, engine: SyncEngine, keep_finished: int = 50):
        self.engine = engine
        self.keep_finished = keep_finished
        self._syncs: dict[str, BackgroundSync] = {}
        self._lock = threading.Lock()

    def start(self, request: SyncRequest) -> BackgroundSync:
        """Create the job now (raising on bad input or a running sync), then run it in a thread."""
        holder: dict[str, BackgroundSync] = {}

        def on_progress(p: SyncProgress) -> None:
            if (bg := holder.get("bg")) is not None:
                bg.progress = p

        run = self.engine.prepare(request, on_progress)
        bg = BackgroundSync(run.sync_id, request, run.progress)
        holder["bg"] = bg

        def target() -> None:
            try:
                bg.result = run.run()
            except Exception as exc:  # the job row already records it; keep the message for the page
                bg.error = str(exc)
                bg.cancelled = isinstance(exc, SyncCancelledError)
            finally:
                bg.finished.set()

        bg.thread = threading.Thread(target=target, name=f"sfduck-sync-{run.sync_id[:8]}", daemon=True)
        with self._lock:
            self._syncs[run.sync_id] = bg
            self._prune()
        bg.thread.start()
        return bg

    def _prune(self) -> None:
        """Forget the oldest finished syncs so a long-lived dashboard does not grow; their jobs stay
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
