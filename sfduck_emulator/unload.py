"""COPY INTO @stage: unloading a query's result to Snowflake-named snappy Parquet files."""

from __future__ import annotations

import os
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import snowflake.connector.errors
from fakesnow.fakes import FakeSnowflakeConnection

from sfduck_emulator.errors import syntax_error, unsupported
from sfduck_emulator.scanner import bool_option
from sfduck_emulator.stages import (
    Stage,
)

DEFAULT_MAX_FILE_SIZE = 16 * 1024 * 1024

_UNLOAD_NAME = re.compile(r"_\d+_\d+_\d+\.snappy\.parquet")


def _parquet_ready(table: pa.Table, header: bool) -> pa.Table:
    """The result as Parquet should see it: plain types, Snowflake's column names."""
    columns, fields = [], []
    for i, (field, column) in enumerate(zip(table.schema, table.columns, strict=True)):
        col: pa.ChunkedArray = column
        typ = field.type
        if isinstance(typ, pa.ExtensionType):  # DuckDB's JSON -> JSON text, as Snowflake unloads VARIANT
            col = pa.chunked_array([c.storage for c in col.chunks], type=typ.storage_type)
            typ = typ.storage_type
        if pa.types.is_dictionary(typ):
            col = col.cast(typ.value_type)
            typ = typ.value_type
        if pa.types.is_null(typ):
            col = col.cast(pa.string())
            typ = pa.string()
        if pa.types.is_large_string(typ):
            col = col.cast(pa.string())
            typ = pa.string()
        columns.append(col)
        fields.append(pa.field(field.name if header else f"col{i + 1}", typ))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _refuse_timezone_columns(table: pa.Table) -> None:
    for field in table.schema:
        if pa.types.is_timestamp(field.type) and field.type.tz:
            raise snowflake.connector.errors.ProgrammingError(
                msg=(
                    "Error encountered when unloading to PARQUET: TIMESTAMP_TZ and LTZ types are not supported "
                    f"for unloading to Parquet. value get: TIMESTAMP_TZ (column {field.name}). "
                    "Cast it, e.g. to TIMESTAMP_NTZ or VARCHAR."
                ),
                errno=100071,
                sqlstate="22000",
            )


def _write_parquet_files(table: pa.Table, directory: str, base: str, max_file_size: int) -> list[str]:
    """Write table as <base>_0_0_<n>.snappy.parquet files of roughly <= max_file_size bytes each.

    Row groups are sized from the uncompressed width so a file gets ~8 of them; a file is closed
    when the next row group would push it past the limit (judged from the groups written so far).
    """
    rows = table.num_rows
    bytes_per_row = max(1.0, table.nbytes / rows)
    group_rows = int(min(122_880, max(1, max_file_size / bytes_per_row / 8)))
    os.makedirs(directory, exist_ok=True)
    paths: list[str] = []
    sink: pa.NativeFile | None = None
    writer: pq.ParquetWriter | None = None
    groups_in_file = 0
    try:
        for offset in range(0, rows, group_rows):
            if writer is not None and sink is not None:
                size = sink.tell()
                if size + size / groups_in_file > max_file_size:
                    writer.close()
                    sink.close()
                    writer = sink = None
            if writer is None:
                path = os.path.join(directory, f"{base}_0_0_{len(paths)}.snappy.parquet")
                paths.append(path)
                sink = pa.OSFile(path, "wb")
                writer = pq.ParquetWriter(sink, table.schema, compression="snappy")
                groups_in_file = 0
            writer.write_table(table.slice(offset, group_rows), row_group_size=group_rows)
            groups_in_file += 1
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    return paths


def unload(
    conn: FakeSnowflakeConnection, stage: Stage, path: str, query: str, opts: dict[str, Any], params: Any
) -> tuple[int, int, int]:
    file_format = opts.get("FILE_FORMAT")
    if not isinstance(file_format, dict) or str(file_format.get("TYPE", "")).upper() != "PARQUET":
        raise unsupported("COPY INTO <location> without FILE_FORMAT = (TYPE = PARQUET)")
    if str(file_format.get("COMPRESSION", "AUTO")).upper() not in ("AUTO", "SNAPPY"):
        raise unsupported(f"Parquet COMPRESSION = {file_format['COMPRESSION']}")
    header = bool_option(opts, "HEADER", False)
    overwrite = bool_option(opts, "OVERWRITE", False)
    single = bool_option(opts, "SINGLE", False)
    try:
        max_file_size = int(opts.get("MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE))
    except ValueError:
        raise syntax_error(f"invalid MAX_FILE_SIZE {opts.get('MAX_FILE_SIZE')}") from None

    cur = conn.cursor()
    cur.execute(query, binding_params=params, server=True)
    result: pa.Table | None = cur._arrow_table  # fakesnow keeps the result here
    if result is None:
        raise syntax_error("COPY INTO <location> needs a query that returns rows")
    _refuse_timezone_columns(result)
    table = _parquet_ready(result, header)
    if table.num_rows == 0:
        return 0, 0, 0

    if not path or path.endswith("/"):
        path += "data"
    subdir, _, base = path.rpartition("/")
    directory = os.path.join(stage.directory, subdir)
    existing = stage.files(path)
    if existing and not overwrite:
        raise snowflake.connector.errors.ProgrammingError(
            msg=(
                f"Files already existing at the unload destination: @{stage.fqname}/{path}. "
                "Use overwrite option to force unloading."
            ),
            errno=100090,
            sqlstate="22000",
        )
    for rel in existing:  # OVERWRITE replaces same-named files only, as Snowflake does
        if (rel == path) if single else bool(_UNLOAD_NAME.fullmatch(rel[len(path) :])):
            os.remove(os.path.join(stage.directory, rel))

    if single:
        os.makedirs(directory, exist_ok=True)
        paths = [os.path.join(directory, base)]
        pq.write_table(table, paths[0], compression="snappy")
    else:
        paths = _write_parquet_files(table, directory, base, max_file_size)
    return table.num_rows, table.nbytes, sum(os.path.getsize(p) for p in paths)
