"""Spooling and loading Arrow batches whose schemas disagree, as the connector's chunks can."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sfduck_core.config import Target
from sfduck_core.errors import SyncFailedError
from sfduck_core.source import SourceColumn, TableDescription
from sfduck_core.storage import open_storage
from sfduck_core.transfer import load_arrow_spool, spool_arrow_batches
from sfduck_core.typemap import plan_columns

COLUMNS = [("ID", "NUMBER(38,0)"), ("TS", "TIMESTAMP_NTZ(6)"), ("NOTE", "VARCHAR(100)")]


def description() -> TableDescription:
    return TableDescription("S", "T", tuple(SourceColumn(n, t, True) for n, t in COLUMNS), (),
                            tuple(plan_columns(COLUMNS)))


def batch(ids: pa.Array, ts: pa.Array, notes: pa.Array) -> pa.Table:
    return pa.table({"A": ids, "B": ts, "C": notes})


def test_mixed_chunk_schemas_load_exactly(tmp_path: Path) -> None:
    desc = description()
    con = duckdb.connect()
    open_storage(Target("duckdb", path=tmp_path / "unused.duckdb")).create_table(con, "S", "T", [(p.name, p.duckdb_type) for p in desc.plans])
    huge = 2**70
    chunks = [
        batch(pa.array([1, 2], pa.int8()), pa.array([0, 1_000_000], pa.timestamp("us")), pa.array(["a", "b"])),
        batch(pa.array([3], pa.int64()), pa.array([2_000_000_000], pa.timestamp("ns")), pa.array([None], pa.null())),
        batch(pa.array([Decimal(huge)], pa.decimal128(38, 0)), pa.array([None], pa.timestamp("us")),
              pa.array(["z"])),
        batch(pa.array([4], pa.int16()), pa.array([3_000_000], pa.timestamp("us")), pa.array(["d"])),
    ]
    seen = []
    spool = spool_arrow_batches(chunks, desc, tmp_path / "spool", on_batch=lambda rows, _: seen.append(rows))
    assert spool.bytes_received > 0 and seen[-1] == spool.rows == 5
    load_arrow_spool(con, '"S"."T"', desc, spool)
    rows = con.execute('SELECT * FROM "S"."T" ORDER BY "ID"').fetchall()
    epoch = dt.datetime(1970, 1, 1)
    assert rows == [
        (1, epoch, "a"),
        (2, epoch + dt.timedelta(seconds=1), "b"),
        (3, epoch + dt.timedelta(seconds=2), None),
        (4, epoch + dt.timedelta(seconds=3), "d"),
        (huge, None, "z"),
    ]


def test_a_value_the_target_cannot_hold_is_a_clear_error(tmp_path: Path) -> None:
    columns = [("ID", "NUMBER(18,0)")]
    desc = TableDescription("S", "T", (SourceColumn("ID", "NUMBER(18,0)", True),), (),
                            tuple(plan_columns(columns)))
    con = duckdb.connect()
    open_storage(Target("duckdb", path=tmp_path / "unused.duckdb")).create_table(con, "S", "T", [(p.name, p.duckdb_type) for p in desc.plans])
    with pytest.raises(SyncFailedError, match="could not be stored"):
        spool = spool_arrow_batches([pa.table({"A": pa.array([Decimal(2**70)], pa.decimal128(38, 0))})], desc,
                                    tmp_path / "spool")
        load_arrow_spool(con, '"S"."T"', desc, spool)
