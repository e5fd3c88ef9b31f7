"""The records the metadata holds, as the rest of sfduck sees them: a registration, a filter
over jobs, and the conversions every repository shares."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sfduck_core.metadata.tables import sync_jobs


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def to_json(value: Any) -> str:
    """JSON as sfduck writes it everywhere: datetimes (a watermark's value) as ISO text."""
    return json.dumps(value, default=iso)


@dataclass(frozen=True)
class JobQuery:
    """Which jobs to list or summarize; every field narrows, each is a bound parameter."""

    table_id: str | None = None
    schema_name: str | None = None
    table_name: str | None = None
    tables: tuple[str, ...] = ()  # "SCHEMA.TABLE" labels, any of them
    status: str | None = None
    trigger: str | None = None
    started_by: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        """The conditions on sync_jobs, to AND together (none: every job)."""
        out: list[sa.ColumnElement[bool]] = []
        for column, value in (("table_id", self.table_id), ("schema_name", self.schema_name),
                              ("table_name", self.table_name), ("status", self.status),
                              ("trigger", self.trigger), ("started_by", self.started_by)):
            if value is not None:
                out.append(sync_jobs.c[column] == value)
        if self.tables:
            pairs = [tuple(label.split(".", 1)) for label in self.tables if "." in label]
            out.append(sa.or_(sa.false(), *(sa.and_(sync_jobs.c.schema_name == s, sync_jobs.c.table_name == t)
                                             for s, t in pairs)))
        if self.since is not None:
            out.append(sync_jobs.c.created_at >= self.since)
        if self.until is not None:
            out.append(sync_jobs.c.created_at < self.until)
        return out


@dataclass(frozen=True)
class Registration:
    table_id: str
    schema_name: str
    table_name: str
    status: str
    incremental_key: str | None = None
    primary_key: tuple[str, ...] = ()
    detect_deletes: bool = False
    include_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    # set when this registration changed the column selection: the next sync reloads the table
    full_sync_required: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "table_id": self.table_id,
            "table_name": self.table_name,
            "schema_name": self.schema_name,
            "status": self.status,
            "incremental_key": self.incremental_key,
            "primary_key": list(self.primary_key),
            "detect_deletes": self.detect_deletes,
            "include_columns": list(self.include_columns),
            "exclude_columns": list(self.exclude_columns),
            "full_sync_required": self.full_sync_required,
        }
