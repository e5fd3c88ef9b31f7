"""How a sync reports what it is doing, without knowing who is watching.

The engine calls one callback with an immutable snapshot; the CLI prints it to stderr, the
dashboard stores it for its progress fragment. Nothing here knows about Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SyncProgress:
    sync_id: str
    schema_name: str
    table_name: str
    phase: str = "starting"  # starting, waiting, describing, unloading, downloading, loading, swapping, done, failed
    message: str = ""
    rows_done: int = 0
    rows_total: int | None = None
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0

    @property
    def fraction(self) -> float | None:
        """Share of the work done, when it can be known, for a progress bar."""
        if self.phase == "done":
            return 1.0
        if self.phase == "downloading" and self.files_total:
            return self.files_done / self.files_total
        if self.rows_total:
            return min(self.rows_done / self.rows_total, 1.0)
        return None

    def advance(self, **changes: object) -> SyncProgress:
        return replace(self, **changes)  # type: ignore[arg-type]


ProgressCallback = Callable[[SyncProgress], None]


def ignore_progress(_: SyncProgress) -> None:
    """The default listener: a sync needs no audience."""
