"""Fixes to fakesnow that the emulator needs, applied once when an emulator starts, never at import."""

from __future__ import annotations

import threading
import warnings

import fakesnow.arrow
import pyarrow as pa
import pyarrow.compute as pc

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
