"""Exact Snowflake -> DuckDB type mapping, and how each type crosses each transport.

The spec mapped NUMBER to DOUBLE, which silently loses digits; here every type keeps its values.
Some Snowflake types cannot travel through Parquet as they are (TIMESTAMP_TZ/LTZ are refused,
TIMESTAMP_NTZ(9) is cut to milliseconds, semi-structured types must be serialised), so each column
carries an *encoding*: how Snowflake projects it for the transfer and how DuckDB turns it back.
Integers of epoch micro/nanoseconds are exact and cheap; text is used only where nothing better is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from sfduck_core.sqlident import quote_ident

_TYPE_RE = re.compile(r"^\s*([A-Za-z_]+(?:\s+[A-Za-z_]+)*)\s*(?:\((.*)\))?\s*$")


class Encoding(StrEnum):
    """How a column is carried from Snowflake to DuckDB."""

    AS_IS = "as_is"  # the native value survives both transports
    EPOCH_US = "epoch_us"  # TIMESTAMP_NTZ(0-6) as integer microseconds since the epoch
    EPOCH_NS = "epoch_ns"  # TIMESTAMP_NTZ(7-9) as integer nanoseconds
    EPOCH_US_UTC = "epoch_us_utc"  # TIMESTAMP_TZ/LTZ: the instant, as UTC microseconds
    TEXT = "text"  # TIME, unknown types: the session's text form, parsed by DuckDB
    JSON = "json"  # VARIANT/OBJECT/ARRAY/GEOGRAPHY/VECTOR serialised with TO_JSON


@dataclass(frozen=True)
class SnowflakeType:
    """A parsed `DESC TABLE` type such as NUMBER(38,0) or TIMESTAMP_NTZ(9)."""

    name: str
    params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SnowflakeType:
        match = _TYPE_RE.match(text or "")
        if not match:
            return cls(name=(text or "").strip().upper())
        name = re.sub(r"\s+", " ", match.group(1).upper())
        params = tuple(p.strip() for p in match.group(2).split(",")) if match.group(2) else ()
        return cls(name=name, params=params)

    def int_param(self, index: int, default: int) -> int:
        try:
            return int(self.params[index])
        except (IndexError, ValueError):
            return default

    def __str__(self) -> str:
        return f"{self.name}({','.join(self.params)})" if self.params else self.name


@dataclass(frozen=True)
class TypeMapping:
    duckdb_type: str
    encoding: Encoding
    known: bool = True


_NUMBER_ALIASES = {"NUMBER", "DECIMAL", "NUMERIC", "DEC"}
_INTEGER_ALIASES = {"INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"}
_FLOAT_ALIASES = {"FLOAT", "FLOAT4", "FLOAT8", "DOUBLE", "DOUBLE PRECISION", "REAL"}
_TEXT_ALIASES = {"VARCHAR", "CHAR", "CHARACTER", "NCHAR", "STRING", "TEXT", "NVARCHAR", "NVARCHAR2",
                 "CHAR VARYING", "NCHAR VARYING"}
_BINARY_ALIASES = {"BINARY", "VARBINARY"}
_SEMI_STRUCTURED = {"VARIANT", "OBJECT", "ARRAY", "MAP"}
_GEO = {"GEOGRAPHY", "GEOMETRY"}


def _number(precision: int, scale: int) -> TypeMapping:
    if scale > 0:
        return TypeMapping(f"DECIMAL({min(precision, 38)},{scale})", Encoding.AS_IS)
    if precision <= 18:
        return TypeMapping("BIGINT", Encoding.AS_IS)
    return TypeMapping("HUGEINT", Encoding.AS_IS)


def _timestamp_ntz(precision: int) -> TypeMapping:
    if precision > 6:
        return TypeMapping("TIMESTAMP_NS", Encoding.EPOCH_NS)
    return TypeMapping("TIMESTAMP", Encoding.EPOCH_US)


def map_type(sf_type: SnowflakeType | str) -> TypeMapping:
    """The DuckDB type that holds every value of `sf_type`; unknown types land as VARCHAR text."""
    t = SnowflakeType.parse(sf_type) if isinstance(sf_type, str) else sf_type
    name = t.name
    if name in _NUMBER_ALIASES:
        return _number(t.int_param(0, 38), t.int_param(1, 0))
    if name in _INTEGER_ALIASES:
        return _number(38, 0)
    if name in _FLOAT_ALIASES:
        return TypeMapping("DOUBLE", Encoding.AS_IS)
    if name in _TEXT_ALIASES:
        return TypeMapping("VARCHAR", Encoding.AS_IS)
    if name in _BINARY_ALIASES:
        return TypeMapping("BLOB", Encoding.AS_IS)
    if name in ("BOOLEAN", "DATE"):
        return TypeMapping(name, Encoding.AS_IS)
    if name == "TIME":
        return TypeMapping("TIME_NS" if t.int_param(0, 9) > 6 else "TIME", Encoding.TEXT)
    if name in ("TIMESTAMP_NTZ", "DATETIME", "TIMESTAMP"):
        return _timestamp_ntz(t.int_param(0, 9))
    if name in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
        return TypeMapping("TIMESTAMPTZ", Encoding.EPOCH_US_UTC)
    if name in _SEMI_STRUCTURED:
        return TypeMapping("JSON", Encoding.JSON)
    if name in _GEO:
        return TypeMapping("VARCHAR", Encoding.JSON)
    if name == "VECTOR" and len(t.params) == 2:
        element = "FLOAT" if t.params[0].upper() == "FLOAT" else "INTEGER"
        return TypeMapping(f"{element}[{t.int_param(1, 0)}]", Encoding.JSON)
    return TypeMapping("VARCHAR", Encoding.TEXT, known=False)


_ARROW_TYPES = {
    "BIGINT": pa.int64,
    "HUGEINT": lambda: pa.decimal128(38, 0),
    "DOUBLE": pa.float64,
    "VARCHAR": pa.string,
    "BLOB": pa.binary,
    "BOOLEAN": pa.bool_,
    "DATE": pa.date32,
    "TIMESTAMP": lambda: pa.timestamp("us"),
    "TIMESTAMP_NS": lambda: pa.timestamp("ns"),
    "TIMESTAMPTZ": lambda: pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class ColumnPlan:
    """One column's journey: how Snowflake projects it and how DuckDB reads it back.

    `transfer_name` is a positional alias (C0, C1, ...) so that Parquet headers and Arrow field
    names never depend on quoting rules of exotic column names.
    """

    name: str
    snowflake_type: SnowflakeType
    mapping: TypeMapping
    transfer_name: str

    @property
    def duckdb_type(self) -> str:
        return self.mapping.duckdb_type

    def snowflake_projection(self, for_stage: bool) -> str:
        """The SELECT item Snowflake evaluates for this column."""
        col = quote_ident(self.name)
        encoding = self.mapping.encoding
        if encoding is Encoding.JSON:
            if self.snowflake_type.name in _GEO:
                expr = f"TO_JSON(ST_ASGEOJSON({col}))"
            elif self.snowflake_type.name == "VECTOR":
                expr = f"TO_JSON({col}::ARRAY)"
            else:
                expr = f"TO_JSON({col})"
        elif encoding is Encoding.TEXT:
            expr = f"TO_VARCHAR({col})"
        elif for_stage and encoding is Encoding.EPOCH_NS:
            expr = f"DATE_PART(EPOCH_NANOSECOND, {col})"
        elif for_stage and encoding in (Encoding.EPOCH_US, Encoding.EPOCH_US_UTC):
            expr = f"DATE_PART(EPOCH_MICROSECOND, {col})"
        else:
            expr = col
        return f"{expr} AS {quote_ident(self.transfer_name)}"

    def arrow_type(self) -> pa.DataType:
        """The Arrow type every result batch is cast to before DuckDB reads it.

        The connector's batches can disagree (int8 in one, int64 in the next; ns or us units), and
        one stream into DuckDB needs one schema; a safe cast also refuses silent overflow.
        """
        if self.mapping.encoding in (Encoding.TEXT, Encoding.JSON):
            return pa.string()
        duck = self.duckdb_type
        decimal = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duck)
        if decimal:
            return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
        return _ARROW_TYPES[duck]()

    def duckdb_expression(self, from_stage: bool) -> str:
        """The DuckDB expression that turns the transferred column into the target type."""
        src = quote_ident(self.transfer_name)
        encoding = self.mapping.encoding
        if from_stage and encoding is Encoding.EPOCH_US:
            return f"make_timestamp(CAST({src} AS BIGINT))"
        if from_stage and encoding is Encoding.EPOCH_NS:
            return f"make_timestamp_ns(CAST({src} AS BIGINT))"
        if from_stage and encoding is Encoding.EPOCH_US_UTC:
            return f"timezone('UTC', make_timestamp(CAST({src} AS BIGINT)))"
        if encoding is Encoding.JSON and self.duckdb_type.endswith("]"):
            return f"CAST(CAST({src} AS VARCHAR) AS {self.duckdb_type})"
        return f"CAST({src} AS {self.duckdb_type})"


def plan_columns(described: list[tuple[str, str]]) -> list[ColumnPlan]:
    """Plans for (name, snowflake type text) pairs, in table order."""
    plans = []
    for index, (name, type_text) in enumerate(described):
        sf_type = SnowflakeType.parse(type_text)
        plans.append(ColumnPlan(name, sf_type, map_type(sf_type), f"C{index}"))
    return plans
