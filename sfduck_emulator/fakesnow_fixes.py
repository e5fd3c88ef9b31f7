"""Fixes to fakesnow that the emulator needs, applied once when an emulator starts, never at import."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from string import Template

import fakesnow.arrow
import fakesnow.info_schema as fs_info_schema
import fakesnow.transforms as fs_transforms
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sfduck_emulator.table_stats import install_table_stats

_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_EPOCH_FIELD = pa.field("epoch", nullable=False, type=pa.int64())
_FRACTION_FIELD = pa.field("fraction", nullable=False, type=pa.int32())
_TIMEZONE_FIELD = pa.field("timezone", nullable=False, type=pa.int32())


def timestamp_to_sf_struct(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Snowflake's epoch/fraction[/timezone] struct, with NULL rows kept NULL.

    Replaces fakesnow's version, which had no null mask (NULL -> 1970-01-01) and assumed
    microseconds.
    """
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    if not isinstance(ts.type, pa.TimestampType):
        raise ValueError(f"Expected TimestampArray, got {type(ts)}")

    per_second = _UNIT_PER_SECOND[ts.type.unit]
    values = ts.cast(pa.int64()).fill_null(0)
    # floor division, so instants before 1970 keep a non-negative fraction
    shifted = pc.subtract(values, pc.if_else(pc.less(values, 0), per_second - 1, 0))
    epoch = pc.divide(shifted, per_second)
    remainder = pc.subtract(values, pc.multiply(epoch, per_second))
    fraction = pc.multiply(remainder, 1_000_000_000 // per_second).cast(pa.int32())
    mask = ts.is_null()

    if ts.type.tz:
        assert ts.type.tz in ("UTC", "Etc/UTC"), f"Timezone {ts.type.tz} not supported"
        # 1440 = offset 0 minutes, as Snowflake encodes it
        timezone = pa.array([1440] * len(ts), type=pa.int32())
        return pa.StructArray.from_arrays(
            [epoch, fraction, timezone], fields=[_EPOCH_FIELD, _FRACTION_FIELD, _TIMEZONE_FIELD], mask=mask
        )
    return pa.StructArray.from_arrays([epoch, fraction], fields=[_EPOCH_FIELD, _FRACTION_FIELD], mask=mask)


# Snowflake's <DB>.INFORMATION_SCHEMA.SCHEMATA (the schema lookup behind "schema does not exist"
# errors); fakesnow 0.11.18 has none, and DuckDB's information_schema cannot be qualified by a
# database there. Created per database like fakesnow's own views, and reached the same way.
_SCHEMATA_VIEW = Template("""
create view if not exists ${catalog}._fs_information_schema._fs_schemata AS
select
    catalog_name AS CATALOG_NAME,
    schema_name AS SCHEMA_NAME,
    'SYSADMIN' AS SCHEMA_OWNER,
    'NO' AS IS_TRANSIENT,
    'NO' AS IS_MANAGED_ACCESS,
    1 AS RETENTION_TIME,
    NULL::VARCHAR AS DEFAULT_CHARACTER_SET_CATALOG,
    NULL::VARCHAR AS DEFAULT_CHARACTER_SET_SCHEMA,
    NULL::VARCHAR AS DEFAULT_CHARACTER_SET_NAME,
    NULL::VARCHAR AS SQL_PATH,
    NULL::VARCHAR AS COMMENT,
    to_timestamp(0)::timestamptz AS CREATED,
    to_timestamp(0)::timestamptz AS LAST_ALTERED
from system.information_schema.schemata
where catalog_name = '${catalog}' and schema_name != '_fs_information_schema'
""")


def _with_schemata(per_db_creation_sql: Callable[[str], str]) -> Callable[[str], str]:
    def creation_sql(catalog: str) -> str:
        return f"{per_db_creation_sql(catalog)};\n{_SCHEMATA_VIEW.substitute(catalog=catalog)};"

    creation_sql.sfduck_schemata = True  # type: ignore[attr-defined]
    return creation_sql


def _redirect_schemata(information_schema_fs: Callable[[exp.Expr], exp.Expr]) -> Callable[[exp.Expr], exp.Expr]:
    def redirect(expression: exp.Expr) -> exp.Expr:
        if (isinstance(expression, exp.Table) and expression.db == "INFORMATION_SCHEMA"
                and expression.name == "SCHEMATA"):
            expression.set("this", exp.Identifier(this="_FS_SCHEMATA", quoted=False))
            expression.set("db", exp.Identifier(this="_FS_INFORMATION_SCHEMA", quoted=False))
            return expression
        return information_schema_fs(expression)

    redirect.sfduck_schemata = True  # type: ignore[attr-defined]
    return redirect


def install_schemata() -> None:
    """Give every fakesnow database an INFORMATION_SCHEMA.SCHEMATA (idempotent)."""
    if not getattr(fs_info_schema.per_db_creation_sql, "sfduck_schemata", False):
        fs_info_schema.per_db_creation_sql = _with_schemata(fs_info_schema.per_db_creation_sql)
    if not getattr(fs_transforms.information_schema_fs, "sfduck_schemata", False):
        fs_transforms.information_schema_fs = _redirect_schemata(fs_transforms.information_schema_fs)


_INSTALL_LOCK = threading.Lock()


def install_fixes() -> None:
    """Patch fakesnow for this process (idempotent). Done by `Emulator.start`, so that importing
    the package changes nothing for a process that never runs an emulator."""
    with _INSTALL_LOCK:
        # fakesnow materialises every result through DuckDB's DB-API Arrow export, which warns on
        # each query; in a long-running emulator that is noise, not news.
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)
        fakesnow.arrow.timestamp_to_sf_struct = timestamp_to_sf_struct
        install_table_stats()
        install_schemata()
