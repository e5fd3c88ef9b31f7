"""Synthetic fact table, written the way a Snowflake stage unload and the Arrow transport deliver it.

Stage files: snappy Parquet, ~16 MB each (Snowflake's default MAX_FILE_SIZE), named like an unload
(`data_<id>.parquet_0_0_<n>.snappy.parquet`), with positional column names C0..Cn and
TIMESTAMP_NTZ(0-6) carried as epoch-microsecond BIGINTs (sfduck's `Encoding.EPOCH_US` projection).
NUMBER(38,0) is written as INT64 (what the emulator writes; a real account with the unload type
optimisation turned off writes DECIMAL(38,0), which costs every method the same extra decode).

Arrow batches: what `cursor.fetch_arrow_batches()` yields for the same rows with sfduck's session
settings: NUMBER(38,0) int64, NUMBER(18,2) float64 (no `arrow_number_to_decimal`), TIMESTAMP_NTZ
timestamp[ns], DATE date32, in result chunks of varying size. They are stored as an LZ4-compressed
Arrow IPC stream, so replaying them costs a decode per chunk like the connector's.

Every value derives from a seeded generator per chunk: the same --rows gives the same files.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# (name, Snowflake type as DESC TABLE prints it)
COLUMNS: list[tuple[str, str]] = [
    ("ID", "NUMBER(38,0)"),
    ("CREATED_AT", "TIMESTAMP_NTZ(6)"),
    ("AMOUNT", "NUMBER(18,2)"),
    ("SCORE", "FLOAT"),
    ("STATUS", "VARCHAR(16777216)"),  # low cardinality
    ("CUSTOMER", "VARCHAR(16777216)"),  # high cardinality
    ("IS_ACTIVE", "BOOLEAN"),
    ("EVENT_DATE", "DATE"),
    ("ATTRIBUTES", "VARCHAR(16777216)"),  # JSON-ish text
]
KEY = "ID"
ORDER_BY = "CREATED_AT"
TS_INDEX = 1  # position of the epoch-microsecond column in the stage files
MONEY_INDEX = 2
TARGET_FILE_BYTES = 16 * 1024 * 1024
CHUNK_ROWS = 500_000
# result chunk sizes the Arrow replay cycles through (the connector's chunks vary in size)
ARROW_CHUNK_ROWS = (32_768, 100_000, 131_072, 250_000)

_STATUSES = pa.array(["NEW", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "RETURNED"])
_STATUS_P = [0.1, 0.25, 0.2, 0.4, 0.03, 0.02]
_CHANNELS = pa.array(["web", "store", "phone", "partner", "app"])
_TAGS = pa.array(["promo", "gift", "repeat", "vip", "b2b", "sale", "new", "bulk"])
_EPOCH_2020_US = 1_577_836_800_000_000  # 2020-01-01 00:00:00
_DAYS_2019 = (dt.date(2019, 1, 1) - dt.date(1970, 1, 1)).days


def stage_schema() -> pa.Schema:
    return pa.schema([
        ("C0", pa.int64()), ("C1", pa.int64()), ("C2", pa.decimal128(18, 2)), ("C3", pa.float64()),
        ("C4", pa.string()), ("C5", pa.string()), ("C6", pa.bool_()), ("C7", pa.date32()), ("C8", pa.string()),
    ])


def arrow_schema() -> pa.Schema:
    """The types the connector's Arrow batches carry for COLUMNS."""
    return pa.schema([
        ("C0", pa.int64()), ("C1", pa.timestamp("ns")), ("C2", pa.float64()), ("C3", pa.float64()),
        ("C4", pa.string()), ("C5", pa.string()), ("C6", pa.bool_()), ("C7", pa.date32()), ("C8", pa.string()),
    ])


def _nulls(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.nulls(len(arr), arr.type), arr)


def _decimal_cents(cents: np.ndarray) -> pa.Array:
    """decimal128(18,2) straight from integer cents (16-byte little-endian two's complement)."""
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def make_chunk(ids: np.ndarray, seed: int, customers: int) -> pa.Table:
    """One chunk of stage-shaped rows for the given ids."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    created = _EPOCH_2020_US + ids * 1_500_000 + rng.integers(0, 1_000_000, n)
    cents = rng.integers(-50_000, 250_000_000, n)
    score = rng.random(n) * 1000.0
    status = pc.take(_STATUSES, pa.array(rng.choice(len(_STATUSES), n, p=_STATUS_P)))
    customer = pc.binary_join_element_wise(
        "customer_", pc.cast(pa.array(rng.integers(0, customers, n)), pa.string()), "@example.com", "")
    active = rng.random(n) < 0.7
    days = _DAYS_2019 + (ids // 10_000) % 2500 + rng.integers(0, 30, n)
    attrs = pc.binary_join_element_wise(
        '{"channel":"', pc.take(_CHANNELS, pa.array(rng.integers(0, len(_CHANNELS), n))),
        '","items":', pc.cast(pa.array(rng.integers(1, 50, n)), pa.string()),
        ',"discount":', pc.cast(pa.array(rng.integers(0, 40, n)), pa.string()),
        ',"tags":["', pc.take(_TAGS, pa.array(rng.integers(0, len(_TAGS), n))),
        '","', pc.take(_TAGS, pa.array(rng.integers(0, len(_TAGS), n))), '"]}', "")
    cols = [
        pa.array(ids, pa.int64()),
        _nulls(pa.array(created, pa.int64()), rng.random(n) < 0.005),
        _nulls(_decimal_cents(cents), rng.random(n) < 0.01),
        _nulls(pa.array(score), rng.random(n) < 0.01),
        status,
        _nulls(customer, rng.random(n) < 0.02),
        pa.array(active),
        pa.array(days.astype(np.int32), pa.int32()).cast(pa.date32()),
        _nulls(attrs, rng.random(n) < 0.05),
    ]
    return pa.Table.from_arrays(cols, schema=stage_schema())


def _chunks(id_batches: Iterator[np.ndarray], seed: int, customers: int) -> Iterator[pa.Table]:
    for i, ids in enumerate(id_batches):
        yield make_chunk(ids, seed * 100_003 + i, customers)


def _write_stage_files(out: Path, tables: Iterator[pa.Table]) -> dict:
    """Split into ~16 MB snappy files named like a Snowflake unload."""
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"data_{uuid.uuid4().hex[:12]}.parquet"
    writer: pq.ParquetWriter | None = None
    rows_per_file = 0
    in_file = files = rows = 0
    for table in tables:
        if not rows_per_file:  # measure the compressed size of a sample once
            sample = table.slice(0, 100_000)
            buf = io.BytesIO()
            pq.write_table(sample, buf, compression="snappy")
            rows_per_file = max(1000, int(TARGET_FILE_BYTES / (buf.tell() / sample.num_rows)))
        offset = 0
        while offset < table.num_rows:
            if writer is None:
                writer = pq.ParquetWriter(out / f"{prefix}_0_0_{files}.snappy.parquet", stage_schema(),
                                          compression="snappy")
                files += 1
                in_file = 0
            take = min(rows_per_file - in_file, table.num_rows - offset)
            writer.write_table(table.slice(offset, take), row_group_size=rows_per_file)
            offset += take
            in_file += take
            rows += take
            if in_file >= rows_per_file:
                writer.close()
                writer = None
    if writer is not None:
        writer.close()
    size = sum(p.stat().st_size for p in out.glob("*.parquet"))
    return {"rows": rows, "files": files, "bytes": size, "rows_per_file": rows_per_file}


def write_fact(out: Path, rows: int, seed: int = 1) -> dict:
    """The full table: ids 1..rows, in id order (as an unload of a clustered table)."""

    def ids() -> Iterator[np.ndarray]:
        for start in range(0, rows, CHUNK_ROWS):
            yield np.arange(start + 1, min(rows, start + CHUNK_ROWS) + 1, dtype=np.int64)

    return _write_stage_files(out, _chunks(ids(), seed, max(1, rows // 2)))


def write_change_set(out: Path, base_rows: int, fraction: float = 0.10, seed: int = 7) -> dict:
    """`fraction` of base_rows: half updates of existing keys (new values), half new keys."""
    total = int(base_rows * fraction)
    updates = total // 2
    rng = np.random.default_rng(seed)
    updated = np.sort(rng.choice(np.arange(1, base_rows + 1, dtype=np.int64), updates, replace=False))
    new = np.arange(base_rows + 1, base_rows + 1 + (total - updates), dtype=np.int64)
    all_ids = np.concatenate([updated, new])

    def ids() -> Iterator[np.ndarray]:
        for start in range(0, len(all_ids), CHUNK_ROWS):
            yield all_ids[start:start + CHUNK_ROWS]

    info = _write_stage_files(out, _chunks(ids(), seed, max(1, base_rows // 2)))
    info.update(updates=updates, inserts=total - updates)
    return info


def to_arrow_transport(table: pa.Table) -> pa.Table:
    """Stage-shaped rows -> the types the connector's Arrow batches carry."""
    cols = list(table.columns)
    cols[TS_INDEX] = pc.multiply(cols[TS_INDEX], 1000).cast(pa.timestamp("ns"))
    cols[MONEY_INDEX] = cols[MONEY_INDEX].cast(pa.float64())
    return pa.Table.from_arrays(cols, schema=arrow_schema())


def write_arrow_stream(stage_dir: Path, out_file: Path) -> dict:
    """Replayable 'result chunks': an LZ4 IPC stream of batches cycling ARROW_CHUNK_ROWS."""
    files = sorted(stage_dir.glob("*.parquet"))
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    pending: list[pa.RecordBatch] = []
    pending_rows = chunks = rows = 0
    with pa.OSFile(str(out_file), "wb") as sink, pa.ipc.new_stream(sink, arrow_schema(), options=options) as w:

        def emit(n: int) -> None:
            nonlocal pending, pending_rows, chunks, rows
            table = pa.Table.from_batches(pending, arrow_schema())
            w.write_batch(table.slice(0, n).combine_chunks().to_batches()[0])
            rest = table.slice(n)
            pending = rest.to_batches()
            pending_rows = rest.num_rows
            chunks += 1
            rows += n

        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=65_536):
                pending.extend(to_arrow_transport(pa.Table.from_batches([batch])).to_batches())
                pending_rows += batch.num_rows
                while pending_rows >= (want := ARROW_CHUNK_ROWS[chunks % len(ARROW_CHUNK_ROWS)]):
                    emit(want)
        if pending_rows:
            emit(pending_rows)
    return {"rows": rows, "chunks": chunks, "bytes": out_file.stat().st_size}


def main(argv: list[str]) -> None:
    """`datagen.py fact DIR ROWS [ARROW_FILE]` | `datagen.py changes DIR BASE_ROWS` -> JSON info."""
    kind, out, n = argv[0], Path(argv[1]), int(argv[2])
    if kind == "fact":
        info = write_fact(out, n)
        if len(argv) > 3:
            info["arrow"] = write_arrow_stream(out, Path(argv[3]))
    else:
        info = write_change_set(out, n)
    print(json.dumps(info))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
