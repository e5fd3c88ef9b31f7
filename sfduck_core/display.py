"""Values as text a person can trust: what the dashboard shows is exactly what the DuckDB file holds.

pandas, Arrow-to-JavaScript and the browser's grid turn a HUGEINT or a DECIMAL(38,10) into a
JavaScript double (9223372036854775807 became 9223372036854776000, 38 nines became 1e+28) and show
NULL one way in one column and another way in the next. So every value is turned into text here,
from exact Python values (int, Decimal, float, bytes, datetime) or, where Python has none (TIME_NS,
'infinity', years past 9999, intervals, nested values), from DuckDB's own text:

- integers and decimals: every digit, decimals with their column's scale (NUMBER(10,2) 1 is `1.00`);
- doubles: the shortest text that reads back as the same double (Python's repr; `inf`, `nan`);
- NULL: a missing value, never a text, so the grid shows it its one way (a faded `None`) in every
  column, told apart from a string "None" by its style;
- dates and times as DuckDB writes them; an instant (TIMESTAMPTZ) in UTC with its zone, `+00`;
- binary: `0x` and upper-case hex; JSON on one line (`"key": value`); lists, structs and maps as
  DuckDB writes them;
- booleans: `true` / `false`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_PY_DATE_DAYS = (-719_162, 2_932_896)  # 0001-01-01 and 9999-12-31, as days since 1970
_PY_DATETIME_S = (-62_135_596_800, 253_402_300_799)
_TIMESTAMP_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
TYPE_KEY = b"sfduck.duckdb_type"  # field metadata: the column's DuckDB type, where Arrow cannot tell (JSON)


def exact_text(value: Any) -> str | None:
    """One value as exact text; None (a missing value) for NULL."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, np.floating) and not isinstance(value, np.float64):
        return str(value)  # numpy's shortest text for its own width (a FLOAT of 0.1 is `0.1`)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, Decimal):
        return format(value, "f")  # every digit and the scale, never an exponent
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex().upper()
    if isinstance(value, dt.datetime | dt.time):
        return _clock_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def _clock_text(value: dt.datetime | dt.time) -> str:
    """As DuckDB writes it: no trailing zeros in the fraction, an instant in UTC as `+00`."""
    zone = ""
    if value.tzinfo is not None and isinstance(value, dt.datetime):
        value, zone = value.astimezone(dt.UTC), "+00"
    nanos = getattr(value, "nanosecond", 0)  # a pandas Timestamp keeps nanoseconds
    text = value.strftime("%Y-%m-%d %H:%M:%S" if isinstance(value, dt.datetime) else "%H:%M:%S")
    if isinstance(value, dt.datetime) and value.year < 1000:
        text = f"{value.year:04d}{text[text.index('-'):]}"  # strftime does not pad years below 1000 everywhere
    fraction = f"{value.microsecond:06d}{nanos:03d}".rstrip("0") if value.microsecond or nanos else ""
    return text + (f".{fraction}" if fraction else "") + zone


def _json_default(value: Any) -> Any:
    """Inside a nested value: numbers stay numbers where JSON can hold them exactly, else text."""
    if isinstance(value, Decimal) and value == value.to_integral_value() and abs(value) < 2**53:
        return int(value)
    return exact_text(value)


def readable_json(text: str | None) -> str | None:
    """JSON on one line with a space after each `:` and `,` (Snowflake unloads it indented);
    integers keep every digit, other numbers their shortest round-trip text."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text  # not JSON after all: shown as it is


def beyond_python_dates(column: pa.ChunkedArray) -> bool:
    """DuckDB's 'infinity' and years past 9999 have no Python equivalent."""
    kind = column.type
    if pa.types.is_date32(kind):
        ints, (low, high) = column.cast(pa.int32()), _PY_DATE_DAYS
    elif pa.types.is_timestamp(kind):
        unit = _TIMESTAMP_UNITS[kind.unit]
        ints, (low, high) = column.cast(pa.int64()), tuple(s * unit for s in _PY_DATETIME_S)
    else:
        return False
    extremes = pc.min_max(ints)
    return extremes["min"].is_valid and (extremes["min"].as_py() < low or extremes["max"].as_py() > high)


def needs_duckdb_text(column: pa.ChunkedArray) -> bool:
    """DuckDB's own text is shown for types Python cannot hold exactly (TIME_NS, 'infinity', years
    past 9999, intervals, nested values) and, to read the same in every column, for every date and
    time (with the zone of an instant, in UTC)."""
    kind = column.type
    return (isinstance(kind, pa.BaseExtensionType) or pa.types.is_interval(kind) or pa.types.is_union(kind)
            or pa.types.is_nested(kind) or pa.types.is_dictionary(kind) or pa.types.is_temporal(kind))


def duckdb_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """DuckDB's own text for each value (what an analyst sees in its shell), zones in UTC."""
    with duckdb.connect(config={"enable_external_access": False}) as con:
        con.execute("SET TimeZone = 'UTC'")
        relation = con.from_arrow(pa.table({"value": column}))
        text = relation.project(duckdb.ColumnExpression("value").cast(duckdb.sqltype("VARCHAR")))
        return text.to_arrow_table().column(0)


def _python_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_floating(kind) and kind.bit_width < 64:
        values: Sequence[Any] = list(column.to_numpy(zero_copy_only=False))
        nulls = column.is_null().to_pylist()
        values = [None if null else value for value, null in zip(values, nulls, strict=True)]
    else:
        values = column.to_pylist()
    return pa.chunked_array([pa.array([exact_text(v) for v in values], pa.string())], pa.string())


def is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def with_duckdb_types(table: pa.Table, types: dict[str, str]) -> pa.Table:
    """Mark the columns whose DuckDB type Arrow does not carry (JSON arrives as plain text)."""
    fields = [field.with_metadata({**(field.metadata or {}), TYPE_KEY: types[field.name].encode()})
              if field.name in types else field for field in table.schema]
    return table.cast(pa.schema(fields, table.schema.metadata))


def _is_json(field: pa.Field) -> bool:
    return (field.metadata or {}).get(TYPE_KEY) == b"JSON"


def exact_table(table: pa.Table) -> pa.Table:
    """Every column as exact text (NULL stays a missing value); the names and their order are kept."""
    for index, field in enumerate(table.schema):
        column = table.column(index)
        convert: Callable[[pa.ChunkedArray], pa.ChunkedArray] = (
            duckdb_text if needs_duckdb_text(column) else _python_text)
        text = convert(column)
        if _is_json(field):
            text = pa.chunked_array([pa.array([readable_json(v) for v in text.to_pylist()], pa.string())],
                                    pa.string())
        table = table.set_column(index, pa.field(field.name, pa.string()), text)
    return table


def exact_frame(table: pa.Table) -> pd.DataFrame:
    """`exact_table` as a pandas frame for the grid; numbers are found with `numeric_columns`."""
    return exact_table(table).to_pandas()


def numeric_columns(table: pa.Table) -> list[str]:
    """The columns that hold numbers (shown right-aligned even as text)."""
    return [field.name for field in table.schema if is_numeric(field.type)]
