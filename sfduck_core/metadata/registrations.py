"""Registrations (`allowed_tables`), the data's source label and the audit log."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sfduck_core.errors import NotRegisteredError, TableNotFoundError
from sfduck_core.metadata.records import Registration, iso, now, to_json
from sfduck_core.metadata.tables import allowed_tables, audit_log, data_source, table_sync_status
from sfduck_core.suggest import did_you_mean

if TYPE_CHECKING:
    from sfduck_core.metadata.engine import MetadataEngine

_AUDIT_COLUMNS = ("changed_at", "actor", "action", "table_id", "schema_name", "table_name", "details")


def _registration(row: Any) -> Registration:
    return Registration(row.table_id, row.schema_name, row.table_name, row.status, row.incremental_key,
                        tuple(row.primary_key or ()), bool(row.detect_deletes), tuple(row.include_columns or ()),
                        tuple(row.exclude_columns or ()))


class Registrations:
    def __init__(self, db: MetadataEngine) -> None:
        self.db = db

    @staticmethod
    def fetch(conn: Connection, schema: str | None = None, table: str | None = None, *,
              table_id: str | None = None) -> Registration | None:
        """One registration, by name or (with `table_id`) by id, in the caller's transaction."""
        where = (allowed_tables.c.table_id == table_id if table_id is not None
                 else sa.and_(allowed_tables.c.schema_name == schema, allowed_tables.c.table_name == table))
        row = conn.execute(sa.select(allowed_tables).where(where)).first()
        return _registration(row) if row else None

    def get(self, schema: str, table: str) -> Registration | None:
        with self.db.read() as conn:
            return self.fetch(conn, schema, table)

    def by_id(self, table_id: str) -> Registration:
        with self.db.read() as conn:
            reg = self.fetch(conn, table_id=table_id)
        if reg is None:
            raise TableNotFoundError(f"No registered table with id {table_id!r}.")
        return reg

    def list(self, include_inactive: bool = False) -> list[Registration]:
        query = sa.select(allowed_tables).order_by(allowed_tables.c.schema_name, allowed_tables.c.table_name)
        if not include_inactive:
            query = query.where(allowed_tables.c.status == "active")
        with self.db.read() as conn:
            return [_registration(r) for r in conn.execute(query)]

    def require_active(self, schema: str, table: str) -> Registration:
        reg = self.get(schema, table)
        if reg is None or reg.status != "active":
            known = [f"{r.schema_name}.{r.table_name}" for r in self.list()]
            raise NotRegisteredError(schema, table, f"{schema}.{table} is not registered for syncing."
                                     + did_you_mean(f"{schema}.{table}", known))
        return reg

    def upsert(self, schema: str, table: str, *, incremental_key: str | None, primary_key: Sequence[str],
               detect_deletes: bool, include_columns: Sequence[str],
               exclude_columns: Sequence[str]) -> Registration:
        """Register (or re-activate) a table; registering again only updates its settings. A new
        column selection on a synced table forgets its watermark and source fingerprint, so the
        next sync (of either strategy) rebuilds it: `full_sync_required` says so."""
        ts = now()
        values = {"status": "active", "incremental_key": incremental_key, "primary_key": list(primary_key),
                  "detect_deletes": bool(detect_deletes), "include_columns": list(include_columns),
                  "exclude_columns": list(exclude_columns), "updated_at": ts}
        with self.db.write() as conn:
            existing = self.fetch(conn, schema, table)
            reselected = False
            if existing:
                table_id = existing.table_id
                conn.execute(allowed_tables.update().where(allowed_tables.c.table_id == table_id).values(values))
                reselected = (tuple(include_columns), tuple(exclude_columns)) != (
                    existing.include_columns, existing.exclude_columns)
                if reselected:
                    conn.execute(table_sync_status.update().where(table_sync_status.c.table_id == table_id)
                                 .values(watermark=None, source_last_modified=None, source_row_count=None))
            else:
                table_id = str(uuid.uuid4())
                conn.execute(allowed_tables.insert().values(table_id=table_id, schema_name=schema,
                                                            table_name=table, created_at=ts, **values))
            reg = self.fetch(conn, table_id=table_id)
            synced = conn.execute(sa.select(table_sync_status.c.table_id)
                                  .where(table_sync_status.c.table_id == table_id)).first() is not None
        assert reg is not None
        return dataclasses.replace(reg, full_sync_required=reselected and synced)

    def deactivate(self, schema: str, table: str) -> Registration:
        with self.db.write() as conn:
            reg = self.fetch(conn, schema, table)
            if reg is None:
                raise NotRegisteredError(schema, table, f"{schema}.{table} is not registered.")
            conn.execute(allowed_tables.update().where(allowed_tables.c.table_id == reg.table_id)
                         .values(status="inactive", updated_at=now()))
            reg = self.fetch(conn, table_id=reg.table_id)
        assert reg is not None
        return reg

    # --- which Snowflake the data comes from ------------------------------------------------------

    def claim_source(self, label: str) -> str | None:
        """Claim the data for `label` when it holds no registration or no claim yet; returns the
        label of another Snowflake that holds it (the caller refuses to mix), else None."""
        with self.db.write() as conn:
            row = conn.execute(sa.select(data_source.c.label).limit(1)).first()
            if row is not None and row.label == label:
                return None
            registered = conn.execute(sa.select(sa.func.count()).select_from(allowed_tables)).scalar_one()
            if row is None or not registered:
                conn.execute(data_source.delete())
                conn.execute(data_source.insert().values(label=label, claimed_at=now()))
                return None
            return str(row.label)

    # --- the audit log ---------------------------------------------------------------------------

    def audit(self, action: str, actor: str | None, reg: Registration | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Record who changed what (registrations, schedules); never read back by sfduck itself."""
        with self.db.write() as conn:
            conn.execute(audit_log.insert().values(
                changed_at=now(), actor=actor, action=action, table_id=reg.table_id if reg else None,
                schema_name=reg.schema_name if reg else None, table_name=reg.table_name if reg else None,
                details=details or None))

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        query = (sa.select(*(audit_log.c[c] for c in _AUDIT_COLUMNS))
                 .order_by(audit_log.c.changed_at.desc(), audit_log.c.id.desc()).limit(limit))
        with self.db.read() as conn:
            rows = conn.execute(query).mappings().all()
        # `details` as the JSON text it was written as (what callers of the seed's audit log read)
        return [{k: to_json(v) if k == "details" and v is not None else iso(v) for k, v in row.items()}
                for row in rows]
