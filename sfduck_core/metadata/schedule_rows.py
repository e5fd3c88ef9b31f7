"""The `schedules` table, joined with the registrations for their names (rules in
sfduck_core.schedules)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from sfduck_core.metadata.tables import allowed_tables, schedules

if TYPE_CHECKING:
    from sfduck_core.metadata.engine import MetadataEngine

SCHEDULE_COLUMNS = ("table_id", "cron", "timezone", "interval_s", "strategy", "enabled", "consecutive_failures",
                    "paused_reason", "next_run_at", "last_run_at", "last_sync_id", "last_outcome", "updated_by",
                    "updated_at")


class ScheduleRows:
    def __init__(self, db: MetadataEngine) -> None:
        self.db = db

    def select(self, table_id: str | None = None) -> list[dict[str, Any]]:
        """Every schedule (or the table's), with its table's schema_name and table_name."""
        query = (sa.select(allowed_tables.c.schema_name, allowed_tables.c.table_name,
                           *(schedules.c[c] for c in SCHEDULE_COLUMNS))
                 .join(allowed_tables, allowed_tables.c.table_id == schedules.c.table_id)
                 .order_by(allowed_tables.c.schema_name, allowed_tables.c.table_name))
        if table_id is not None:
            query = query.where(schedules.c.table_id == table_id)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def replace(self, values: dict[str, Any]) -> None:
        """The table's schedule becomes `values` (a row of SCHEDULE_COLUMNS)."""
        with self.db.write() as conn:
            conn.execute(schedules.delete().where(schedules.c.table_id == values["table_id"]))
            conn.execute(schedules.insert().values(values))

    def update(self, table_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(SCHEDULE_COLUMNS)
        if unknown:
            raise ValueError(f"not a column of schedules: {sorted(unknown)}")
        with self.db.write() as conn:
            conn.execute(schedules.update().where(schedules.c.table_id == table_id).values(fields))

    def delete(self, table_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(schedules.delete().where(schedules.c.table_id == table_id))
