"""Merging a change set into an existing DuckDB table: watermarks, schema drift, upserts, deletes.

The spec's incremental sync ("key > last value", then import as a full sync) lost rows at the
watermark and wiped the table. Here the change set only ever inserts or replaces rows by key, all
inside the caller's transaction. Delete-by-key plus insert was measured as the fastest upsert in
DuckDB (0.2-0.3x a full reload for 10% changes, versus ~1x for MERGE or INSERT OR REPLACE).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from sfduck_core.errors import SyncFailedError
from sfduck_core.sqlident import qualified, quote_ident, quote_list
from sfduck_core.storage import Storage
from sfduck_core.typemap import ColumnPlan

_SAFE_SF_TYPE = re.compile(r"^[A-Z_ ]+(\(\d+(,\d+)?\))?$")
_SAFE_DUCK_TYPE = re.compile(r"^[A-Z_]+(\(\d+,\d+\))?$")


@dataclass(frozen=True)
class Watermark:
    """The highest incremental-key value loaded so far, typed, as exact text in UTC."""

    column: str
    duckdb_type: str
    snowflake_type: str
    value: str

    def as_dict(self) -> dict[str, str]:
        return {"column": self.column, "duckdb_type": self.duckdb_type,
                "snowflake_type": self.snowflake_type, "value": self.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Watermark | None:
        if not data or data.get("value") is None:
            return None
        if not _SAFE_DUCK_TYPE.match(str(data["duckdb_type"])):
            raise SyncFailedError(f"The stored watermark has an unexpected type {data['duckdb_type']!r}; "
                                  "run a full sync to reset it.")
        return cls(data["column"], data["duckdb_type"], data["snowflake_type"], str(data["value"]))

    def snowflake_literal_sql(self) -> str:
        """`CAST(? AS <type>)`: the value is bound, the type comes from DESC TABLE, not the user."""
        if not _SAFE_SF_TYPE.match(self.snowflake_type):
            raise SyncFailedError(f"Unexpected Snowflake type {self.snowflake_type!r} for the incremental key.")
        return f"CAST(? AS {self.snowflake_type})"


def read_watermark(con: duckdb.DuckDBPyConnection, schema: str, table: str, plan: ColumnPlan) -> Watermark | None:
    """max(key) of `table`, rendered without loss: timestamps with every fraction digit, in UTC."""
    return _key_value(con, plan, "max", f"FROM {qualified(schema, table)}")


def _key_value(con: duckdb.DuckDBPyConnection, plan: ColumnPlan, aggregate: str, from_sql: str) -> Watermark | None:
    col = quote_ident(plan.name)
    duck_type = plan.duckdb_type
    if duck_type == "TIMESTAMPTZ":  # rendered in UTC whatever the session's time zone
        expr = f"strftime(timezone('UTC', {aggregate}({col})), '%Y-%m-%d %H:%M:%S.%f') || '+00:00'"
    else:
        expr = f"CAST({aggregate}({col}) AS VARCHAR)"
    value = con.execute(f"SELECT {expr} {from_sql}").fetchone()[0]
    if value is None:
        return None
    return Watermark(plan.name, duck_type, str(plan.snowflake_type), value)


def stale_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str, keys_table: str,
               key: Sequence[str], plan: ColumnPlan) -> tuple[int, Watermark | None]:
    """How many source rows (primary key + incremental key, streamed into `keys_table`) the local
    table lacks, and the lowest incremental key among them: rows committed late below the
    watermark, or re-stamped with an older key. (0, None) when the local table has them all."""
    col = quote_ident(plan.name)
    target, keys = qualified(schema, table), qualified(schema, keys_table)
    missing = (f"FROM {keys} k WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE "
               f"{_key_match('t', 'k', key)} AND t.{col} IS NOT DISTINCT FROM k.{col})")
    count = int(con.execute(f"SELECT count(*) {missing}").fetchone()[0])
    return count, (_key_value(con, plan, "min", missing) if count else None)


@dataclass
class DriftReport:
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    widened: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"columns_added": self.added, "columns_dropped_at_source": self.dropped,
                "types_widened": self.widened}


_INT_RANK = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4, "HUGEINT": 5}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def _is_widening(old: str, new: str) -> bool:
    old, new = old.upper(), new.upper()
    if old == new:
        return True
    if old in _INT_RANK and new in _INT_RANK:
        return _INT_RANK[new] >= _INT_RANK[old]
    old_dec, new_dec = _DECIMAL.fullmatch(old), _DECIMAL.fullmatch(new)
    if old_dec and new_dec:
        (op, os_), (np_, ns) = map(int, old_dec.groups()), map(int, new_dec.groups())
        return ns >= os_ and (np_ - ns) >= (op - os_)
    if old in _INT_RANK and new_dec:
        digits = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19, "HUGEINT": 39}[old]
        p, s = map(int, new_dec.groups())
        return p - s >= digits
    return (old, new) in {("TIMESTAMP", "TIMESTAMP_NS"), ("TIME", "TIME_NS"), ("FLOAT", "DOUBLE")}


def apply_drift(storage: Storage, con: duckdb.DuckDBPyConnection, schema: str, table: str, plans: Sequence[ColumnPlan]
                ) -> DriftReport:
    """Bring the local table's columns in line with the source, or refuse with a way out."""
    local = dict(storage.table_columns(con, schema, table))
    report = DriftReport()
    for plan in plans:
        if plan.name not in local:
            con.execute(f"ALTER TABLE {qualified(schema, table)} ADD COLUMN {quote_ident(plan.name)} "
                        f"{storage.column_type(plan.duckdb_type)}")
            report.added.append(plan.name)
            continue
        old = local[plan.name]
        new = _normalise(storage.column_type(plan.duckdb_type))
        if _normalise(old) == new:
            continue
        if not _is_widening(_normalise(old), new):
            raise SyncFailedError(
                f"Column {plan.name!r} changed type at the source from {old} to {plan.duckdb_type}, which "
                "cannot be converted in place; run a full sync to rebuild the table."
            )
        con.execute(f"ALTER TABLE {qualified(schema, table)} ALTER COLUMN {quote_ident(plan.name)} "
                    f"TYPE {plan.duckdb_type}")
        report.widened.append({"column": plan.name, "from": old, "to": plan.duckdb_type})
    source_names = {p.name for p in plans}
    report.dropped = [name for name in local if name not in source_names]
    return report


def _normalise(duck_type: str) -> str:
    t = duck_type.upper().replace(" ", "")
    return {"TIMESTAMPWITHTIMEZONE": "TIMESTAMPTZ", "TIMESTAMP_US": "TIMESTAMP", "INT128": "HUGEINT",
            "INT8": "BIGINT", "INT64": "BIGINT", "DOUBLEPRECISION": "DOUBLE"}.get(t, t)


def _key_match(left: str, right: str, key: Sequence[str]) -> str:
    return " AND ".join(f"{left}.{quote_ident(k)} IS NOT DISTINCT FROM {right}.{quote_ident(k)}" for k in key)


@dataclass
class MergeResult:
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0  # re-fetched at the inclusive watermark or a NULL key, identical to what we had
    duplicate_keys_in_change_set: int = 0


def upsert(storage: Storage, con: duckdb.DuckDBPyConnection, schema: str, table: str, staging: str,
           columns: Sequence[str], key: Sequence[str], order_by: str | None,
           watermark: Watermark | None = None) -> MergeResult:
    """Replace rows whose key is in the change set, insert the rest: delete-by-key + insert.

    Snowflake does not enforce primary keys, so a change set can hold one key twice; the row with
    the highest incremental key wins, and the duplicates are counted rather than loaded. Rows
    re-fetched at the inclusive watermark or with a NULL key are counted as unchanged when
    identical, so the stats do not report updates that did not happen; only those rows are compared.
    """
    target, stage = qualified(schema, table), qualified(schema, staging)
    result = MergeResult()
    order = f"ORDER BY {quote_ident(order_by)} DESC NULLS LAST" if order_by else ""
    dupes = con.execute(
        f"SELECT count(*) - count(DISTINCT ({quote_list(key)})) FROM {stage}"
    ).fetchone()[0]
    if dupes:
        result.duplicate_keys_in_change_set = int(dupes)
        con.execute(
            f"DELETE FROM {stage} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER "
            f"(PARTITION BY {quote_list(key)} {order}) AS n FROM {stage}) WHERE n > 1)"
        )
    if watermark is not None:
        wm_col = quote_ident(watermark.column)
        same_row = " AND ".join(f"t.{quote_ident(c)} IS NOT DISTINCT FROM s.{quote_ident(c)}" for c in columns)
        result.rows_unchanged = int(con.execute(
            f"SELECT count(*) FROM {stage} s JOIN {target} t ON {_key_match('t', 's', key)} "
            f"WHERE (s.{wm_col} = CAST(? AS {watermark.duckdb_type}) OR s.{wm_col} IS NULL) AND {same_row}",
            [watermark.value],
        ).fetchone()[0])
    matched = int(con.execute(
        f"DELETE FROM {target} t USING {stage} s WHERE {_key_match('t', 's', key)}"
    ).fetchone()[0])
    cols = quote_list(columns)
    con.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}")
    result.rows_updated = matched - result.rows_unchanged
    result.rows_inserted = storage.count_rows(con, schema, staging) - matched
    return result


def append(storage: Storage, con: duckdb.DuckDBPyConnection, schema: str, table: str, staging: str, columns: Sequence[str]) -> int:
    cols = quote_list(columns)
    con.execute(f"INSERT INTO {qualified(schema, table)} ({cols}) SELECT {cols} FROM {qualified(schema, staging)}")
    return storage.count_rows(con, schema, staging)


def backfill(con: duckdb.DuckDBPyConnection, schema: str, table: str, source_table: str, key: Sequence[str],
             columns: Sequence[str]) -> int:
    """Set `columns` of the local rows from `source_table` (key + those columns), matched by key."""
    sets = ", ".join(f"{quote_ident(c)} = s.{quote_ident(c)}" for c in columns)
    return int(con.execute(
        f"UPDATE {qualified(schema, table)} t SET {sets} FROM {qualified(schema, source_table)} s "
        f"WHERE {_key_match('t', 's', key)}"
    ).fetchone()[0])


def delete_missing(storage: Storage, con: duckdb.DuckDBPyConnection, schema: str, table: str, keys_table: str,
                   key: Sequence[str]) -> int:
    """Delete local rows whose key no longer exists at the source (keys streamed into `keys_table`)."""
    target, keys = qualified(schema, table), qualified(schema, keys_table)
    before = storage.count_rows(con, schema, table)
    con.execute(f"DELETE FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM {keys} k WHERE {_key_match('t', 'k', key)})")
    return before - storage.count_rows(con, schema, table)
