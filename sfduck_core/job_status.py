"""The statuses a sync job can have, in a module light enough for the thin `--server` client."""

from __future__ import annotations

JOB_STATUSES = ("pending", "waiting", "running", "completed", "skipped", "failed", "cancelled")
# The statuses of a job that has not ended: it blocks another sync of its table and can be
# cancelled. `waiting`: it waits for the DuckDB file another process holds (its message names it).
ACTIVE_JOB_STATUSES = ("pending", "waiting", "running")
# The statuses of a job that left the copy matching the source: `completed` moved the changes,
# `skipped` found none to move. Skipping, watermarks and "last success" read both the same way.
SUCCESS_STATUSES = ("completed", "skipped")
