"""What a sync job records about itself (`sync_jobs.stats`), as one typed object.

The engine fills the job-level fields, the transfer returns its own (`TransferResult`); the JSON
stays one flat object, as the spec's stats are, with only the fields a run actually recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sfduck_core.transfer import TransferResult

_ALWAYS_RECORDED = {"strategy", "rows_processed", "total_rows", "filter"}
_WATERMARK_FIELDS = {"watermark_before", "watermark_after"}


@dataclass
class SyncStats:
    strategy: str
    filter: str | None = None
    rows_processed: int = 0
    total_rows: int | None = 0
    table_stats: dict[str, Any] = field(default_factory=dict)
    unknown_types: list[dict[str, str]] | None = None
    skipped: bool | None = None
    incremental_key: str | None = None
    watermark_before: dict[str, str] | None = None
    watermark_after: dict[str, str] | None = None
    null_key_rows: int | None = None
    schema_drift: dict[str, Any] | None = None
    rows_loaded: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_unchanged: int | None = None
    rows_deleted: int | None = None
    late_rows: int | None = None  # committed below the watermark, caught by delete detection
    duplicate_keys_in_change_set: int | None = None
    full_load: bool | None = None
    restored_from: dict[str, Any] | None = None  # a restore: the sync (and snapshot) whose version came back
    duration_s: float | None = None
    transfer: TransferResult = field(default_factory=TransferResult)

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON: the transfer's fields beside the job's; fields a run never set are left out,
        except the watermarks of an incremental or skipped run, whose null says "none yet"."""
        keep_watermarks = self.skipped or self.incremental_key is not None
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "transfer":
                continue
            value = getattr(self, f.name)
            if (value is not None or f.name in _ALWAYS_RECORDED
                    or (keep_watermarks and f.name in _WATERMARK_FIELDS)):
                out[f.name] = value
        if not self.table_stats:
            out.pop("table_stats")
        out.update(self.transfer.as_dict())
        return out
