"""Demo mode only: make the demo's ORDERS table change, on request or on a timer, so that a newcomer
sees an incremental sync move rows and detect deletes (issue 19).

The change itself belongs to the emulator (`sfduck_emulator.demo_data.change_orders`), which the
core reaches through its demo-source entry point (`plugins.demo_changer`), never by import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sfduck_core.config import Settings
from sfduck_core.errors import SfduckError
from sfduck_core.plugins import demo_changer
from sfduck_core.store import now

CHANGE_LIMIT = 1_000  # rows of each kind per change (the emulator's own limit too)
MIN_INTERVAL_S = 10.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoChange:
    """How many ORDERS rows one change inserts, updates (moving UPDATED_AT) and deletes."""

    inserts: int = 20
    updates: int = 30
    deletes: int = 10

    def __post_init__(self) -> None:
        for name in ("inserts", "updates", "deletes"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= CHANGE_LIMIT:
                raise SfduckError(f"{name.capitalize()} must be a whole number from 0 to {CHANGE_LIMIT}, not {value!r}.")
        if not (self.inserts or self.updates or self.deletes):
            raise SfduckError("Choose at least one row to insert, update or delete.")


def change_demo_orders(settings: Settings, change: DemoChange) -> dict[str, int]:
    """Apply one change to the demo's ORDERS; a clear error outside demo mode."""
    changer = _changer(settings)
    return changer(change.inserts, change.updates, change.deletes)


def _changer(settings: Settings) -> Callable[[int, int, int], dict[str, int]]:
    changer = demo_changer(settings)
    if changer is None:
        raise SfduckError("Changing the demo's tables works in demo mode only (with the embedded emulator); "
                          "a real Snowflake account's tables are never changed by sfduck.")
    return changer


@dataclass
class DemoTimer:
    """Changes ORDERS every `interval_s` seconds in a daemon thread of this process, until stopped."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event | None = None
    interval_s: float | None = None
    change: DemoChange | None = None
    last: dict[str, Any] | None = None  # the last change: what it did and when, or its error

    @property
    def running(self) -> bool:
        return self._stop is not None

    def start(self, interval_s: float, change: DemoChange) -> None:
        if interval_s < MIN_INTERVAL_S:
            raise SfduckError(f"Change the demo every {MIN_INTERVAL_S:g} seconds at most often, not every {interval_s:g}.")
        changer = _changer(self.settings)
        with self._lock:
            self._halt()
            stop = self._stop = threading.Event()
            self.interval_s, self.change = float(interval_s), change
        threading.Thread(target=self._run, args=(stop, changer, float(interval_s), change), daemon=True,
                         name="sfduck-demo-changes").start()

    def stop(self) -> None:
        with self._lock:
            self._halt()

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def _run(self, stop: threading.Event, changer: Callable[[int, int, int], dict[str, int]], interval_s: float,
             change: DemoChange) -> None:
        while not stop.wait(interval_s):
            try:
                self.last = {**changer(change.inserts, change.updates, change.deletes), "at": now()}
            except Exception as exc:  # the demo keeps running; the page shows what went wrong
                _log.exception("changing the demo's ORDERS failed")
                self.last = {"error": str(exc), "at": now()}


_TIMERS: dict[int, DemoTimer] = {}
_TIMERS_LOCK = threading.Lock()


def demo_timer(settings: Settings) -> DemoTimer:
    """The process-wide timer (one per settings object: the dashboard's service has one; the timer
    keeps its settings alive, so their id is never reused while it is registered)."""
    with _TIMERS_LOCK:
        return _TIMERS.setdefault(id(settings), DemoTimer(settings))
