"""An embedded Snowflake emulator on loopback, for the zero-config demo and for tests.

Why it exists: sfduck must be exercised end to end - the real `snowflake.connector` over HTTP,
`COPY INTO @stage` + `GET` as well as Arrow result batches - without a Snowflake account. fakesnow
0.12.1's server mode gets most of the way (DuckDB behind Snowflake's REST protocol); this module
wraps its Starlette app and adds what the sync engine needs and fakesnow lacks:

* login that refuses a wrong user/password the way Snowflake does (errno 390100);
* `COPY INTO @stage[/prefix] FROM (SELECT ...) | table FILE_FORMAT = (TYPE = PARQUET) ...`, writing
  snappy Parquet files named like Snowflake (`<prefix>_0_0_<n>.snappy.parquet`, `data_0_0_<n>...`
  when the prefix is empty or ends with `/`), split on MAX_FILE_SIZE (default 16 MB), no file for
  zero rows, columns `col1..colN` unless HEADER = TRUE, OVERWRITE = FALSE refusing existing files,
  and Snowflake's refusal to unload TIMESTAMP_TZ/LTZ to Parquet;
* `GET`, answered with the LOCAL_FS `DOWNLOAD` block so the real connector copies the files itself
  (a missing local dir gives the connector's 253005, a prefix matching nothing its 253006);
* `REMOVE`/`RM`, `DROP STAGE [IF EXISTS]`, `LIST` (fakesnow's cannot resolve quoted stage names
  and has no `@~`; the user stage `@~` exists for everyone);
  temporary stages are dropped when the session that created them logs out;
* `ALTER SESSION SET/UNSET` of parameters fakesnow rejects (TIMEZONE, the unload type
  optimisation, ...) is accepted and ignored: the emulator always runs in UTC;
* NULL timestamps: fakesnow builds the epoch/fraction struct without a null mask, so NULL
  TIMESTAMP_NTZ/LTZ/TZ values reached clients as 1970-01-01. Importing this module patches
  `fakesnow.arrow.timestamp_to_sf_struct` (also honouring the Arrow time unit). TIME NULLs were fine.

One emulator per process is the intended use: fakesnow's server module keeps its sessions and its
shared in-memory DuckDB (`fakesnow.server.sessions`, `shared_fs`) in module globals. A second
`Emulator` in the same process works (own port, own user/password) but serves the SAME tables and
stages, and its seeding replaces the demo tables for everyone (e.g. a test's small "data" table
replaces the embedded emulator's million rows) - unless it is given its own `database`/`schema`,
which is how a test that must not disturb a shared emulator's demo tables seeds its own copy.

What fakesnow (and so the emulator) cannot hold or gets wrong - the sync engine must not rely on
the emulator for these:

* NUMBER(38,0) (and INT/BIGINT) is stored as BIGINT: values beyond int64 are impossible;
  NUMBER(p<38, 0) and NUMBER(p, s>0) are DuckDB DECIMALs and exact. No VECTOR, GEOGRAPHY,
  GEOMETRY, MAP.
* TIMESTAMP_NTZ(n) is stored with microseconds whatever n is (nanoseconds are lost), TIME too.
  TIMESTAMP_TZ and TIMESTAMP_LTZ both become TIMESTAMPTZ: the instant survives, the per-row
  offset does not; both are reported as TIMESTAMP_TZ.
* `DESC TABLE` reports: TIMESTAMP_NTZ(9) for every NTZ precision, TIMESTAMP_TZ(9) for LTZ and TZ,
  VARIANT for OBJECT and ARRAY, VARCHAR(16777216) for CHAR(n)/VARCHAR(n), BINARY(8388608), TIME(9),
  NUMBER(p,s) as declared, and 'N' in "primary key" (use SHOW PRIMARY KEYS).
  INFORMATION_SCHEMA.TABLES has the right ROW_COUNT but BYTES = 0; SHOW TABLES has rows = 0.
* TIMESTAMP_TZ literals need the offset glued to the time: '2024-01-01 10:00:00-08:00' works,
  '2024-01-01 10:00:00 -08:00' fails with "Unknown TimeZone '-08:00'" (DuckDB's parser).
* SUM over a NUMBER column comes back as FLOAT (fakesnow rewrites it to
  SUM(TRY_CAST(x AS DOUBLE))): do not checksum decimals with SUM through the emulator.
* Arrow results (`fetch_arrow_all` / `fetch_arrow_batches`; fakesnow sends ONE batch, whatever the
  size): NUMBER(38,0) int64 but NUMBER(p<38,0) decimal128(p,0); NUMBER(p, s>0) decimal128(p, s)
  even without `arrow_number_to_decimal` (real Snowflake sends scaled integers -> float64 by
  default); FLOAT double; VARCHAR string; BINARY binary; BOOLEAN bool; DATE date32; TIME
  time64[us]; TIMESTAMP_NTZ timestamp[ns] and TIMESTAMP_LTZ/TZ timestamp[ns, tz=Etc/UTC] - but
  timestamp[us] when a value of the batch lies outside 1677-2262 (the connector picks the unit
  from the data); VARIANT/OBJECT/ARRAY string (JSON text as inserted, not re-serialised). No
  result type failed in fetch_arrow_batches.
* Parquet written by COPY INTO: integers INT64, NUMBER(p,s>0) DECIMAL(p,s), FLOAT DOUBLE, dates
  DATE, TIME time64[us], TIMESTAMP_NTZ timestamp[us] (no time zone), VARIANT/OBJECT/ARRAY as
  UTF-8 JSON text, BINARY as BYTE_ARRAY. Every file of one unload has the same physical types (the
  real Snowflake varies them unless ENABLE_UNLOAD_PHYSICAL_TYPE_OPTIMIZATION = FALSE, and writes
  NUMBER(38,0) as DECIMAL(38,0)). Timestamps keep microseconds (the docs say Snowflake writes
  TIMESTAMP_NTZ(9) with milliseconds). `col1..colN` without HEADER follows the project notes and
  was not checked against a real account.
* Error codes the emulator invents because Snowflake does not document them: the TIMESTAMP_TZ
  unload refusal (100071) and "files already exist" (100090; not 100072, which the connector
  turns into IntegrityError).
* Temporary stages are visible to every session (fakesnow keeps one stage registry), and the
  session TIMEZONE is always UTC.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import http.client
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import fakesnow.arrow
import fakesnow.info_schema as fs_info_schema
import fakesnow.server as fs_server
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import snowflake.connector.errors
import sqlglot
import sqlglot.errors
import uvicorn
from fakesnow.converter import from_binding
from fakesnow.fakes import FakeSnowflakeConnection
from fakesnow.transforms import stage as fs_stage
from sqlglot import exp
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sfduck_core.sqlident import qualified

if TYPE_CHECKING:
    from sfduck_core.config import SnowflakeSettings

__all__ = [
    "ALL_TYPES_COLUMNS",
    "ALL_TYPES_ROWS",
    "DEMO_DATABASE",
    "DEMO_SCHEMA",
    "Emulator",
    "EmulatorSettings",
    "embedded_emulator",
    "main",
]

DEMO_DATABASE = "SFDUCK_DEMO"
DEMO_SCHEMA = "WORKSPACE_833213390"
DEFAULT_ACCOUNT = "sfduck_emulator"
DEFAULT_MAX_FILE_SIZE = 16 * 1024 * 1024

logger = logging.getLogger(__name__)

# fakesnow materialises every result through DuckDB's DB-API Arrow export, which warns on each
# query; in a long-running emulator that is noise, not news.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything a client needs to reach a running emulator."""

    host: str
    port: int
    protocol: str
    account: str
    user: str
    password: str
    database: str
    schema: str

    def connect_kwargs(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "database": self.database,
            "schema": self.schema,
        }

    def snowflake_settings(self) -> SnowflakeSettings:
        """The same endpoint as sfduck's connection settings (the fields are the same by design)."""
        from sfduck_core.config import SnowflakeSettings

        return SnowflakeSettings(**self.connect_kwargs())

    def as_env(self) -> dict[str, str]:
        return {
            "SNOWFLAKE_ACCOUNT": self.account,
            "SNOWFLAKE_USER": self.user,
            "SNOWFLAKE_PASSWORD": self.password,
            "SNOWFLAKE_DATABASE": self.database,
            "SNOWFLAKE_SCHEMA": self.schema,
            "SNOWFLAKE_HOST": self.host,
            "SNOWFLAKE_PORT": str(self.port),
            "SNOWFLAKE_PROTOCOL": self.protocol,
        }


# --------------------------------------------------------------------------------------------
# fakesnow patch: NULL timestamps
# --------------------------------------------------------------------------------------------

_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_EPOCH_FIELD = pa.field("epoch", nullable=False, type=pa.int64())
_FRACTION_FIELD = pa.field("fraction", nullable=False, type=pa.int32())
_TIMEZONE_FIELD = pa.field("timezone", nullable=False, type=pa.int32())


def _timestamp_to_sf_struct(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
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


fakesnow.arrow.timestamp_to_sf_struct = _timestamp_to_sf_struct


# --------------------------------------------------------------------------------------------
# A small SQL scanner: enough to recognise the statements the emulator answers itself
# --------------------------------------------------------------------------------------------

_PUNCT = "(),=;"


@dataclass(frozen=True)
class _Tok:
    kind: str  # "word", "str", "punct"
    text: str  # words keep their spelling (quotes included), strings are unescaped
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def _skip_quoted_ident(sql: str, i: int) -> int:
    """Index just past the double-quoted identifier starting at sql[i]."""
    j = i + 1
    while j < len(sql):
        if sql[j] == '"':
            if j + 1 < len(sql) and sql[j + 1] == '"':
                j += 2
                continue
            return j + 1
        j += 1
    return j


def _tokens(sql: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith(("--", "//"), i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif c == "'":
            j, buf = i + 1, []
            while j < n:
                if sql[j] == "\\" and j + 1 < n:
                    buf.append({"n": "\n", "t": "\t", "0": "\0"}.get(sql[j + 1], sql[j + 1]))
                    j += 2
                elif sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        buf.append("'")
                        j += 2
                    else:
                        break
                else:
                    buf.append(sql[j])
                    j += 1
            toks.append(_Tok("str", "".join(buf), i, min(j + 1, n)))
            i = j + 1
        elif sql.startswith("$$", i):
            close = sql.find("$$", i + 2)
            end = n if close < 0 else close
            toks.append(_Tok("str", sql[i + 2 : end], i, min(end + 2, n)))
            i = end + 2
        elif c in _PUNCT:
            toks.append(_Tok("punct", c, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and not sql[j].isspace() and sql[j] not in _PUNCT and sql[j] != "'":
                j = _skip_quoted_ident(sql, j) if sql[j] == '"' else j + 1
            toks.append(_Tok("word", sql[i:j], i, j))
            i = j
    while toks and toks[-1].text == ";" and toks[-1].kind == "punct":
        toks.pop()
    return toks


def _matching_paren(toks: list[_Tok], i: int) -> int:
    """Index of the ')' closing the '(' at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "punct" and toks[j].text == "(":
            depth += 1
        elif toks[j].kind == "punct" and toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    raise _syntax_error("unbalanced parentheses")


def _parse_options(toks: list[_Tok], i: int, stop: int | None = None) -> dict[str, Any]:
    """KEY = value pairs; a parenthesised value becomes a nested dict."""
    stop = len(toks) if stop is None else stop
    opts: dict[str, Any] = {}
    while i < stop:
        key = toks[i]
        if key.kind != "word":
            raise _syntax_error(f"unexpected '{key.text}'")
        if key.upper == "PARTITION":
            raise _unsupported("COPY INTO <location> ... PARTITION BY")
        if i + 1 >= stop or toks[i + 1].text != "=":
            raise _syntax_error(f"expected '=' after {key.text}")
        if i + 2 >= stop:
            raise _syntax_error(f"missing value for {key.text}")
        value_tok = toks[i + 2]
        if value_tok.kind == "punct" and value_tok.text == "(":
            close = _matching_paren(toks, i + 2)
            opts[key.upper] = _parse_options(toks, i + 3, close)
            i = close + 1
        else:
            opts[key.upper] = value_tok.text if value_tok.kind == "str" else value_tok.text.upper()
            i += 3
        if i < stop and toks[i].text == ",":
            i += 1
    return opts


def _bool_option(opts: dict[str, Any], key: str, default: bool) -> bool:
    value = opts.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    raise snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\ninvalid value [{value}] for parameter '{key}'",
        errno=1008,
        sqlstate="22023",
    )


# --------------------------------------------------------------------------------------------
# Errors in Snowflake's shape
# --------------------------------------------------------------------------------------------


def _syntax_error(detail: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nsyntax error: {detail}", errno=1003, sqlstate="42000"
    )


def _unsupported(what: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"{what} is not supported by the sfduck emulator", errno=9999, sqlstate="99999"
    )


def _stage_not_found(fqname: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nStage '{fqname}' does not exist or not authorized.",
        errno=2003,
        sqlstate="02000",
    )


def _error_response(e: snowflake.connector.errors.Error) -> JSONResponse:
    code = f"{e.errno:06d}" if isinstance(e.errno, int) and e.errno > 0 else "009999"
    return JSONResponse(
        {
            "data": {"errorCode": code, "sqlState": e.sqlstate},
            "code": code,
            "message": e.msg,
            "success": False,
        }
    )


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------

_USER_STAGE_ROOT = os.path.join(fs_stage.LOCAL_BUCKET_PATH, "_sfduck_user_stages")


def _normalise_ident(part: str) -> str:
    if len(part) >= 2 and part.startswith('"') and part.endswith('"'):
        return part[1:-1].replace('""', '"')
    return part.upper()


def _split_outside_quotes(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    parts, buf, i, splits = [], [], 0, 0
    while i < len(text):
        if text[i] == '"':
            j = _skip_quoted_ident(text, i)
            buf.append(text[i:j])
            i = j
        elif text[i] == sep and (maxsplit < 0 or splits < maxsplit):
            parts.append("".join(buf))
            buf = []
            splits += 1
            i += 1
        else:
            buf.append(text[i])
            i += 1
    parts.append("".join(buf))
    return parts


@dataclass(frozen=True)
class _Stage:
    """A resolved stage: where its files live and how LIST names them."""

    fqname: str  # DB.SCHEMA.NAME, or "~" for the user stage
    directory: str  # ends with "/"
    list_prefix: str  # what LIST puts before a file's path inside the stage
    temporary: bool = False

    def files(self, prefix: str = "", pattern: str | None = None) -> list[str]:
        """Stage-relative paths (posix) of files under prefix, sorted."""
        found = []
        if os.path.isdir(self.directory):
            for root, _dirs, names in os.walk(self.directory):
                for name in names:
                    rel = os.path.relpath(os.path.join(root, name), self.directory).replace(os.sep, "/")
                    if rel.startswith(prefix) and (
                        pattern is None or re.fullmatch(pattern, self.list_prefix + rel)
                    ):
                        found.append(rel)
        return sorted(found)


def _stage_ref(tok: _Tok) -> tuple[str, str]:
    """('@name-part', 'path') from a stage token such as @db."My Stage"/a/b or '@~/x'."""
    text = tok.text
    if not text.startswith("@"):
        raise _syntax_error(f"'{text}' is not a stage reference (it must start with @)")
    name, *rest = _split_outside_quotes(text[1:], "/", maxsplit=1)
    return name, rest[0] if rest else ""


def _resolve_stage(conn: FakeSnowflakeConnection, name: str, user: str) -> _Stage:
    if name == "~":
        return _Stage("~", os.path.join(_USER_STAGE_ROOT, user) + "/", "")
    if name.startswith("%"):
        raise _unsupported("a table stage (@%table) in COPY INTO <location>/GET/REMOVE")
    parts = [_normalise_ident(p) for p in _split_outside_quotes(name, ".")]
    if len(parts) > 3 or not all(parts):
        raise _syntax_error(f"invalid stage name {name}")
    catalog = parts[-3] if len(parts) == 3 else conn.database
    schema = parts[-2] if len(parts) >= 2 else conn.schema
    if not catalog or not schema:
        raise snowflake.connector.errors.ProgrammingError(
            msg="Cannot perform operation. This session does not have a current database or schema.",
            errno=90105,
            sqlstate="22000",
        )
    fqname = f"{catalog}.{schema}.{parts[-1]}"
    row = conn._duck_conn.execute(  # the session's own DuckDB cursor
        "SELECT type FROM _fs_global._fs_information_schema._fs_stages "
        "WHERE database_name = ? AND schema_name = ? AND name = ?",
        [catalog, schema, parts[-1]],
    ).fetchone()
    if row is None:
        raise _stage_not_found(fqname)
    return _Stage(
        fqname,
        fs_stage.internal_dir(fqname),
        f"{parts[-1].lower()}/",
        temporary="TEMPORARY" in (row[0] or "").upper(),
    )


def _drop_stage_storage(duck: Any, fqname: str) -> None:
    catalog, schema, name = fqname.split(".")
    duck.execute(
        "DELETE FROM _fs_global._fs_information_schema._fs_stages "
        "WHERE database_name = ? AND schema_name = ? AND name = ?",
        [catalog, schema, name],
    )
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(fs_stage.internal_dir(fqname))


# --------------------------------------------------------------------------------------------
# COPY INTO @stage (unload to Parquet)
# --------------------------------------------------------------------------------------------

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


def _unload(
    conn: FakeSnowflakeConnection, stage: _Stage, path: str, query: str, opts: dict[str, Any], params: Any
) -> tuple[int, int, int]:
    file_format = opts.get("FILE_FORMAT")
    if not isinstance(file_format, dict) or str(file_format.get("TYPE", "")).upper() != "PARQUET":
        raise _unsupported("COPY INTO <location> without FILE_FORMAT = (TYPE = PARQUET)")
    if str(file_format.get("COMPRESSION", "AUTO")).upper() not in ("AUTO", "SNAPPY"):
        raise _unsupported(f"Parquet COMPRESSION = {file_format['COMPRESSION']}")
    header = _bool_option(opts, "HEADER", False)
    overwrite = _bool_option(opts, "OVERWRITE", False)
    single = _bool_option(opts, "SINGLE", False)
    try:
        max_file_size = int(opts.get("MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE))
    except ValueError:
        raise _syntax_error(f"invalid MAX_FILE_SIZE {opts.get('MAX_FILE_SIZE')}") from None

    cur = conn.cursor()
    cur.execute(query, binding_params=params, server=True)
    result: pa.Table | None = cur._arrow_table  # fakesnow keeps the result here
    if result is None:
        raise _syntax_error("COPY INTO <location> needs a query that returns rows")
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


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def _column(name: str, kind: str) -> dict[str, Any]:
    fixed = kind == "fixed"
    return {
        "name": name,
        "database": "",
        "schema": "",
        "table": "",
        "nullable": True,
        "type": kind,
        "byteLength": None if fixed else 16777216,
        "length": None if fixed else 16777216,
        "scale": 0 if fixed else None,
        "precision": 38 if fixed else None,
        "collation": None,
    }


def _rows_response(
    conn: FakeSnowflakeConnection, columns: list[tuple[str, str]], rows: list[list[Any]]
) -> JSONResponse:
    return JSONResponse(
        {
            "data": {
                "parameters": [{"name": "TIMEZONE", "value": "Etc/UTC"}],
                "rowtype": [_column(n, k) for n, k in columns],
                "rowset": [[None if v is None else str(v) for v in row] for row in rows],
                "queryResultFormat": "json",
                "total": len(rows),
                "returned": len(rows),
                "queryId": str(uuid.uuid4()),
                "statementTypeId": 4096,  # a SELECT: the connector then counts the rows
                "finalDatabaseName": conn.database,
                "finalSchemaName": conn.schema,
            },
            "success": True,
        }
    )


def _status_response(conn: FakeSnowflakeConnection, message: str) -> JSONResponse:
    return _rows_response(conn, [("status", "text")], [[message]])


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _bindings(body: dict[str, Any]) -> Any:
    """Positional or named bindings the way fakesnow's server reads them (no array binding)."""
    bindings = body.get("bindings")
    if not bindings:
        return None
    if not all(k.isdigit() for k in bindings):
        return {name: from_binding(b) for name, b in bindings.items()}
    if any(isinstance(b["value"], list) for b in bindings.values()):
        raise _unsupported("array binding in a stage command")
    return tuple(from_binding(bindings[str(pos)]) for pos in range(1, len(bindings) + 1))


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()  # Starlette caches it: fakesnow's handler can read it again
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


# --- table statistics ----------------------------------------------------------------------
# fakesnow reports LAST_ALTERED as 1970 and ROW_COUNT from DuckDB's estimate (stale after a
# DELETE). sfduck's "skip when unchanged" relies on both, as on real Snowflake, so the emulator
# keeps exact figures per table, refreshed after every statement that changes a table.

_STATS_TABLE = "_fs_global._fs_information_schema._sfduck_table_stats"
_DML_NODES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Alter, exp.TruncateTable,
              exp.Drop)


_STATS_TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_STATS_TABLE} (catalog VARCHAR, schema_name VARCHAR, table_name VARCHAR, "
    "row_count BIGINT, last_altered TIMESTAMPTZ, bytes BIGINT)"
)


# Snowflake lists views in INFORMATION_SCHEMA.TABLES with TABLE_TYPE 'VIEW'; fakesnow lists none.
_VIEWS_AS_TABLES = """
union all
select
    v.database_name, v.schema_name, v.view_name, 'SYSADMIN', 'VIEW', 'NO', NULL::VARCHAR,
    NULL::BIGINT, NULL::BIGINT, 1, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR,
    'NO', 'YES', NULL::VARCHAR, to_timestamp(0)::timestamptz, to_timestamp(0)::timestamptz,
    to_timestamp(0)::timestamptz, 'SYSADMIN', 'NO', v.comment, 'NO', 'NO', 'NO', 'NO', 'NO'
from duckdb_views() v
where v.database_name = '${catalog}' and not v.internal and v.schema_name != '_fs_information_schema'
"""


def _install_table_stats() -> None:
    """Make every fakesnow database's INFORMATION_SCHEMA.TABLES read the exact figures.

    The view is created per database from a template; the statistics table is created in the
    same template, so other fakesnow instances in this process (patch mode in tests) keep working.
    """
    template = fs_info_schema.SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW.template
    if "_sfduck_stats" in template:
        return
    template = template.replace(
        '0 AS "BYTES"', 'coalesce(_sfduck_stats.bytes, 0) AS "BYTES"'
    ).replace(
        'tables.estimated_size AS "ROW_COUNT"', 'coalesce(_sfduck_stats.row_count, tables.estimated_size) AS "ROW_COUNT"'
    ).replace(
        'to_timestamp(0)::timestamptz AS "LAST_ALTERED"',
        'coalesce(_sfduck_stats.last_altered, to_timestamp(0)::timestamptz) AS "LAST_ALTERED"',
    ).replace(
        "where tables.database_name = '${catalog}'",
        f"left join {_STATS_TABLE} _sfduck_stats on tables.database_name = _sfduck_stats.catalog AND "
        "tables.schema_name = _sfduck_stats.schema_name AND tables.table_name = _sfduck_stats.table_name\n"
        "where tables.database_name = '${catalog}'",
    )
    template = template.rstrip().rstrip(";") + _VIEWS_AS_TABLES
    fs_info_schema.SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW = Template(f"{_STATS_TABLE_DDL};\n{template}")
    fs_server.shared_fs.duck_conn.execute(_STATS_TABLE_DDL)


def _changed_table(sql: str, conn: FakeSnowflakeConnection) -> tuple[str, str, str] | None:
    """(catalog, schema, table) a statement writes to, or None for reads and anything unclear."""
    try:
        expr = sqlglot.parse_one(sql, read="snowflake")
    except sqlglot.errors.SqlglotError:
        return None
    if not isinstance(expr, _DML_NODES):
        return None
    if isinstance(expr, exp.Create | exp.Drop | exp.Alter) and str(expr.args.get("kind", "")).upper() != "TABLE":
        return None
    table = expr.this
    while table is not None and not isinstance(table, exp.Table):
        table = table.this if isinstance(table.this, exp.Expression) else None
    if table is None:
        return None

    def ident(part: exp.Expression | None, default: str | None) -> str | None:
        if part is None:
            return default
        return part.name if part.args.get("quoted") else part.name.upper()

    catalog = ident(table.args.get("catalog"), conn.database)
    schema = ident(table.args.get("db"), conn.schema)
    name = ident(table.args.get("this"), None)
    if not (catalog and schema and name):
        return None
    return catalog, schema, name


def _record_table_change(sql: str, conn: FakeSnowflakeConnection) -> None:
    target = _changed_table(sql, conn)
    if target is not None:
        _refresh_table_stats(target)


def _refresh_table_stats(target: tuple[str, str, str]) -> None:
    """Exact row count, now as LAST_ALTERED, and BYTES estimated as the table's text size
    (Snowflake's compressed size is unknowable here; zero would make every size estimate useless)."""
    duck = fs_server.shared_fs.duck_conn.cursor()
    try:
        duck.execute(f"DELETE FROM {_STATS_TABLE} WHERE catalog = ? AND schema_name = ? AND table_name = ?",
                     list(target))
        exists = duck.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
            list(target),
        ).fetchone()
        if not exists:
            return
        quoted = qualified(*target)
        count, size = duck.execute(
            f"SELECT count(*), coalesce(sum(strlen(CAST(t AS VARCHAR))), 0) FROM {quoted} t"
        ).fetchone()
        duck.execute(f"INSERT INTO {_STATS_TABLE} VALUES (?, ?, ?, ?, now(), ?)", [*target, count, size])
    finally:
        duck.close()


_install_table_stats()


_PASSTHROUGH_SESSION_PARAMS = {"AUTOCOMMIT", "QUOTED_IDENTIFIERS_IGNORE_CASE"}


class _App:
    """fakesnow's Starlette app with authentication and the stage commands in front of it."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.temp_stages: dict[str, set[str]] = {}
        self.prevent_internal_unload = False
        self._lock = threading.Lock()
        routes = [
            Route("/session/v1/login-request", self.login, methods=["POST"]),
            Route("/session", self.session, methods=["POST"]),
            Route("/queries/v1/query-request", self.query, methods=["POST"]),
            Route("/telemetry/send", self.telemetry, methods=["POST"]),
            *fs_server.routes,
        ]
        self.app = Starlette(routes=routes)

    # -- authentication --------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        data = (await _json_body(request)).get("data") or {}
        login_name = str(data.get("LOGIN_NAME") or "")
        password = str(data.get("PASSWORD") or "")
        user_ok = secrets.compare_digest(login_name.upper().encode(), self.user.upper().encode())
        password_ok = secrets.compare_digest(password.encode(), self.password.encode())
        if not (user_ok and password_ok):
            return JSONResponse(
                {
                    "data": {
                        "nextAction": "RETRY_LOGIN",
                        "authnMethod": "USERNAME_PASSWORD",
                        "loginName": login_name,
                    },
                    "code": "390100",
                    "message": "Incorrect username or password was specified.",
                    "success": False,
                    "headers": None,
                }
            )
        response = await fs_server.login_request(request)
        payload = json.loads(bytes(response.body))
        if payload.get("success") and isinstance(payload.get("data"), dict):
            # Without a master token the connector never logs out (close() fails quietly with
            # "Connection is closed"), so sessions and their temporary stages would live forever.
            payload["data"]["masterToken"] = secrets.token_urlsafe(32)
        return JSONResponse(payload, status_code=response.status_code)

    async def session(self, request: Request) -> Response:
        token = None
        with contextlib.suppress(fs_server.ServerError):
            token = fs_server.to_token(request)
        conn = fs_server.sessions.get(token) if token else None
        response = await fs_server.session(request)
        if token and conn is not None and bool(request.query_params.get("delete")):
            await run_in_threadpool(self._close_session, token, conn)
        return response

    def _close_session(self, token: str, conn: FakeSnowflakeConnection) -> None:
        """Snowflake drops temporary stages (and tables) when their session ends."""
        with self._lock:
            stages = self.temp_stages.pop(token, set())
        duck = fs_server.shared_fs.duck_conn.cursor()
        try:
            for fqname in stages:
                _drop_stage_storage(duck, fqname)
        finally:
            duck.close()
        with contextlib.suppress(Exception):
            conn.close()

    async def telemetry(self, request: Request) -> Response:
        return JSONResponse({"success": True, "data": None, "code": None, "message": None})

    # -- queries -----------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        try:
            token = fs_server.to_token(request)
            conn = fs_server.to_conn(token)
        except fs_server.ServerError:
            return await fs_server.query_request(request)  # fakesnow answers with its 401
        body = await _json_body(request)
        sql = body.get("sqlText") or ""
        try:
            toks = _tokens(sql)
        except Exception:  # let fakesnow report whatever it makes of it
            return await fs_server.query_request(request)
        if body.get("describeOnly") or not toks:
            return await fs_server.query_request(request)
        try:
            handled = await run_in_threadpool(self._dispatch, conn, toks, sql, body)
        except snowflake.connector.errors.Error as e:
            logger.info("emulator refused %r: %s", sql[:200], e)
            return _error_response(e)
        if handled is not None:
            return handled
        response = await fs_server.query_request(request)
        self._remember_temp_stage(token, conn, toks, response)
        if b'"success":true' in bytes(response.body).replace(b" ", b""):
            await run_in_threadpool(_record_table_change, sql, conn)
        return response

    def _dispatch(
        self, conn: FakeSnowflakeConnection, toks: list[_Tok], sql: str, body: dict[str, Any]
    ) -> Response | None:
        words = [t.upper for t in toks[:3]]
        if words[:2] == ["COPY", "INTO"] and len(toks) > 2 and toks[2].text.startswith("@"):
            return self._copy_into_stage(conn, toks, sql, body)
        if words[0] == "GET":
            return self._get(conn, toks)
        if words[0] in ("REMOVE", "RM"):
            return self._remove(conn, toks)
        if words[0] in ("LIST", "LS") and len(toks) > 1 and not toks[1].text.startswith("@%"):
            # fakesnow's LIST mis-resolves quoted names (@"DB"."SCHEMA"."S") and has no @~
            return self._list(conn, toks)
        if words[:2] == ["DROP", "STAGE"]:
            return self._drop_stage(conn, toks)
        if words[:3] == ["ALTER", "ACCOUNT", "SET"] or words[:3] == ["ALTER", "ACCOUNT", "UNSET"]:
            return self._alter_account(conn, toks)
        if words[:2] == ["ALTER", "SESSION"] and len(toks) > 2 and words[2] in ("SET", "UNSET"):
            names = {t.upper for t in toks[3:] if t.kind == "word"}
            if not names & _PASSTHROUGH_SESSION_PARAMS:
                return _status_response(conn, "Statement executed successfully.")
        return None

    def _alter_account(self, conn: FakeSnowflakeConnection, toks: list[_Tok]) -> Response:
        """Only PREVENT_UNLOAD_TO_INTERNAL_STAGES, so tests can see sfduck fall back to arrow
        exactly as it must on accounts that forbid internal-stage unloads."""
        words = [t.upper for t in toks if t.kind == "word"]
        if "PREVENT_UNLOAD_TO_INTERNAL_STAGES" not in words:
            raise _unsupported("ALTER ACCOUNT other than PREVENT_UNLOAD_TO_INTERNAL_STAGES")
        self.prevent_internal_unload = words[2] == "SET" and "TRUE" in words
        return _status_response(conn, "Statement executed successfully.")

    def _copy_into_stage(
        self, conn: FakeSnowflakeConnection, toks: list[_Tok], sql: str, body: dict[str, Any]
    ) -> Response:
        if self.prevent_internal_unload:
            raise snowflake.connector.errors.ProgrammingError(
                msg="Unload to internal stage is not allowed by the account parameter "
                "PREVENT_UNLOAD_TO_INTERNAL_STAGES.",
                errno=3575,
                sqlstate="0A000",
            )
        name, path = _stage_ref(toks[2])
        if len(toks) < 5 or toks[3].upper != "FROM":
            raise _syntax_error("expected FROM after the stage in COPY INTO <location>")
        if toks[4].text == "(":
            close = _matching_paren(toks, 4)
            query = sql[toks[4].end : toks[close].start]
            rest = close + 1
        elif toks[4].kind == "word":
            query = f"SELECT * FROM {toks[4].text}"
            rest = 5
        else:
            raise _syntax_error(f"unexpected '{toks[4].text}' after FROM")
        opts = _parse_options(toks, rest)
        stage = _resolve_stage(conn, name, self.user)
        rows, input_bytes, output_bytes = _unload(conn, stage, path, query, opts, _bindings(body))
        return _rows_response(
            conn,
            [("rows_unloaded", "fixed"), ("input_bytes", "fixed"), ("output_bytes", "fixed")],
            [[rows, input_bytes, output_bytes]],
        )

    def _get(self, conn: FakeSnowflakeConnection, toks: list[_Tok]) -> Response:
        if len(toks) < 3:
            raise _syntax_error("GET needs a stage and a local 'file://' URL")
        name, path = _stage_ref(toks[1])
        local = toks[2].text
        if not local.lower().startswith("file://"):
            raise _syntax_error(f"GET target {local} must be a file:// URL")
        opts = _parse_options(toks, 3)
        stage = _resolve_stage(conn, name, self.user)
        local_path = unquote(urlparse(local).path) or local[len("file://") :]
        try:
            parallel = int(opts.get("PARALLEL", 10))
        except ValueError:
            raise _syntax_error(f"invalid PARALLEL {opts.get('PARALLEL')}") from None
        files = stage.files(path, opts.get("PATTERN"))
        return JSONResponse(
            {
                "data": {
                    # Snowflake hands out one stage location plus paths relative to it; with
                    # LOCAL_FS the connector copies them itself and builds the result rows.
                    "command": "DOWNLOAD",
                    "src_locations": files,
                    "localLocation": local_path,
                    "parallel": max(1, min(parallel, 99)),
                    "encryptionMaterial": None,
                    "stageInfo": {"locationType": "LOCAL_FS", "location": stage.directory, "creds": {}},
                    "queryId": str(uuid.uuid4()),
                    "finalDatabaseName": conn.database,
                    "finalSchemaName": conn.schema,
                },
                "success": True,
            }
        )

    def _remove(self, conn: FakeSnowflakeConnection, toks: list[_Tok]) -> Response:
        if len(toks) < 2:
            raise _syntax_error("REMOVE needs a stage")
        name, path = _stage_ref(toks[1])
        opts = _parse_options(toks, 2)
        stage = _resolve_stage(conn, name, self.user)
        rows = []
        for rel in stage.files(path, opts.get("PATTERN")):
            os.remove(os.path.join(stage.directory, rel))
            rows.append([stage.list_prefix + rel, "removed"])
        return _rows_response(conn, [("name", "text"), ("result", "text")], rows)

    def _list(self, conn: FakeSnowflakeConnection, toks: list[_Tok]) -> Response:
        name, path = _stage_ref(toks[1])
        opts = _parse_options(toks, 2)
        stage = _resolve_stage(conn, name, self.user)
        rows = []
        for rel in stage.files(path, opts.get("PATTERN")):
            full = os.path.join(stage.directory, rel)
            stat = os.stat(full)
            modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
            rows.append([stage.list_prefix + rel, stat.st_size, _md5(full), modified])
        return _rows_response(
            conn, [("name", "text"), ("size", "fixed"), ("md5", "text"), ("last_modified", "text")], rows
        )

    def _drop_stage(self, conn: FakeSnowflakeConnection, toks: list[_Tok]) -> Response:
        i = 2
        if_exists = [t.upper for t in toks[2:4]] == ["IF", "EXISTS"]
        if if_exists:
            i = 4
        if len(toks) != i + 1:
            raise _syntax_error("expected DROP STAGE [IF EXISTS] <name>")
        try:
            stage = _resolve_stage(conn, toks[i].text, self.user)
        except snowflake.connector.errors.ProgrammingError as e:
            if if_exists and e.errno == 2003:
                name = _normalise_ident(_split_outside_quotes(toks[i].text, ".")[-1])
                return _status_response(
                    conn, f"Drop statement executed successfully ({name} already dropped)."
                )
            raise
        _drop_stage_storage(conn._duck_conn, stage.fqname)
        with self._lock:
            for stages in self.temp_stages.values():
                stages.discard(stage.fqname)
        return _status_response(conn, f"{stage.fqname.rsplit('.', 1)[-1]} successfully dropped.")

    def _remember_temp_stage(
        self, token: str, conn: FakeSnowflakeConnection, toks: list[_Tok], response: Response
    ) -> None:
        words = [t.upper for t in toks]
        if not words or words[0] != "CREATE" or "STAGE" not in words[:6]:
            return
        if not any(w in ("TEMP", "TEMPORARY") for w in words[: words.index("STAGE")]):
            return
        if not json.loads(bytes(response.body)).get("success"):
            return
        name_tok = toks[words.index("STAGE") + 1 :]
        if [t.upper for t in name_tok[:3]] == ["IF", "NOT", "EXISTS"]:
            name_tok = name_tok[3:]
        if not name_tok:
            return
        parts = [_normalise_ident(p) for p in _split_outside_quotes(name_tok[0].text, ".")]
        catalog = parts[-3] if len(parts) == 3 else conn.database
        schema = parts[-2] if len(parts) >= 2 else conn.schema
        with self._lock:
            self.temp_stages.setdefault(token, set()).add(f"{catalog}.{schema}.{parts[-1]}")


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Seed data
# --------------------------------------------------------------------------------------------

UTC = dt.UTC

#: (column name, Snowflake type) of ALL_TYPES, in order.
ALL_TYPES_COLUMNS: list[tuple[str, str]] = [
    ("ID", "NUMBER(38,0)"),
    ("NUM_38_0", "NUMBER(38,0)"),
    ("NUM_18_0", "NUMBER(18,0)"),
    ("NUM_10_2", "NUMBER(10,2)"),
    ("NUM_38_10", "NUMBER(38,10)"),
    ("FLT", "FLOAT"),
    ("STR", "VARCHAR"),
    ("CHR5", "CHAR(5)"),
    ("BIN", "BINARY"),
    ("BOOL", "BOOLEAN"),
    ("DT", "DATE"),
    ("TM", "TIME"),
    ("TS_NTZ9", "TIMESTAMP_NTZ(9)"),
    ("TS_NTZ3", "TIMESTAMP_NTZ(3)"),
    ("TS_LTZ", "TIMESTAMP_LTZ"),
    ("TS_TZ", "TIMESTAMP_TZ"),
    ("VAR", "VARIANT"),
    ("OBJ", "OBJECT"),
    ("ARR", "ARRAY"),
]

#: The rows of ALL_TYPES as Python values, in ALL_TYPES_COLUMNS order, ordered by ID.
#: NUMBER(p,0) -> int, NUMBER(p,s>0) -> Decimal, FLOAT -> float, BINARY -> bytes,
#: TIMESTAMP_NTZ -> naive datetime, TIMESTAMP_LTZ/TZ -> aware datetime in UTC (fakesnow keeps the
#: instant only), VARIANT/OBJECT/ARRAY -> the parsed JSON value (compare with json.loads).
#: Precision is what fakesnow can hold: microseconds, int64. DATE, TIMESTAMP_LTZ and TIMESTAMP_TZ
#: reach years 1 and 9999; TIMESTAMP_NTZ stays inside 1677-09-22 .. 2262-04-10 because fakesnow's
#: DESC TABLE calls every NTZ column TIMESTAMP_NTZ(9), whose exact DuckDB type TIMESTAMP_NS cannot
#: hold more (a real NTZ(9) column CAN: the sync engine has to decide what to do with those).
ALL_TYPES_ROWS: list[tuple[Any, ...]] = [
    (1, *([None] * 18)),
    (
        2,
        9223372036854775807,
        999999999999999999,
        Decimal("99999999.99"),
        Decimal("9999999999999999999999999999.9999999999"),
        1.7976931348623157e308,
        "zoë ✓ 日本語 🦆",
        "abcde",
        b"\x00\xff\x10",
        True,
        dt.date(9999, 12, 31),
        dt.time(23, 59, 59, 999999),
        dt.datetime(2262, 4, 10, 23, 59, 59, 999999),
        dt.datetime(2262, 4, 10, 23, 59, 59, 999000),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        {"k": [1, 2.5, "x", None, True], "nested": {"deep": "yes"}},
        {"a": {"b": "c"}, "n": -1},
        [1, "two", None, {"three": 3}],
    ),
    (
        3,
        -9223372036854775808,
        -999999999999999999,
        Decimal("-99999999.99"),
        Decimal("-9999999999999999999999999999.9999999999"),
        -1e308,
        "",
        "",
        b"",
        False,
        dt.date(1, 1, 1),
        dt.time(0, 0, 0),
        dt.datetime(1677, 9, 22, 0, 0, 0),
        dt.datetime(1677, 9, 22, 0, 0, 0),
        dt.datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        dt.datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        [],
        {},
        [],
    ),
    (
        4,
        0,
        1,
        Decimal("0.01"),
        Decimal("0.0000000001"),
        1e-300,
        "it's \"quoted\" \\ back'slash\nnew line",
        "a'b\"c",
        b"'\"\\",
        None,
        dt.date(1970, 1, 1),
        dt.time(12, 34, 56, 123456),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000),
        dt.datetime(1970, 1, 1, 0, 0, 0),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        dt.datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC),
        "just a string",
        {"quote": 'it\'s "q"'},
        ["a'b", 'c"d'],
    ),
    (
        5,
        42,
        -7,
        Decimal("12345.67"),
        Decimal("3.1415926536"),
        0.1,
        "hello",
        "hi",
        b"hello",
        True,
        dt.date(2024, 2, 29),
        dt.time(8, 30),
        dt.datetime(2024, 2, 29, 12, 34, 56, 123456),
        dt.datetime(2024, 2, 29, 12, 34, 56, 123000),
        dt.datetime(2024, 2, 29, 7, 4, 56, 123456, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 7, 4, 56, 123456, tzinfo=UTC),
        {"id": 5, "tags": ["x", "y"]},
        {"k": "v"},
        [1, 2, 3],
    ),
]

#: (ID, Weird "col", lower col) rows of "Mixed Case".
MIXED_CASE_ROWS: list[tuple[Any, ...]] = [
    (1, "one", dt.date(2024, 1, 1)),
    (2, None, None),
    (3, 'th"ree', dt.date(2024, 12, 31)),
]

ORDER_ROWS = 10_000
_ORDER_STATUSES = ["NEW", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"]
_CATEGORIES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def seed(data_rows: int = 1_000_000, database: str = DEMO_DATABASE, schema: str = DEMO_SCHEMA) -> None:
    """Create (or replace) the demo tables in the shared fakesnow database.

    Tables are created through fakesnow (so DESC TABLE and INFORMATION_SCHEMA know their
    Snowflake types) and filled at the DuckDB level (so a million rows take well under a second).
    Every value derives from the row number: each process seeds identical data.
    """
    conn = fs_server.shared_fs.connect(database, schema)
    try:
        cur = conn.cursor()
        duck = conn._duck_conn  # bulk inserts bypass fakesnow's per-statement transforms
        q = f"{database}.{schema}"

        cur.execute(
            'CREATE OR REPLACE TABLE "data" (ID NUMBER(38,0), AMOUNT NUMBER(18,2), CATEGORY VARCHAR, '
            "CREATED_AT TIMESTAMP_NTZ, IS_ACTIVE BOOLEAN, EVENT_DATE DATE, SCORE FLOAT)"
        )
        categories = "[" + ", ".join(_sql_str(c) for c in _CATEGORIES) + "]"
        duck.execute(
            f"""
            INSERT INTO {q}."data"
            SELECT
                i,
                CAST((i * 7919) % 100000000 AS DECIMAL(18, 0)) * 0.01,
                CASE WHEN i % 101 = 0 THEN NULL ELSE {categories}[1 + i % {len(_CATEGORIES)}] END,
                CASE WHEN i % 997 = 0 THEN NULL
                     ELSE TIMESTAMP '2020-01-01 00:00:00' + to_microseconds(i * 37000123) END,
                i % 3 = 0,
                DATE '2020-01-01' + CAST(i % 1500 AS INTEGER),
                (i * 0.6180339887498949) % 1
            FROM range(1, ? + 1) AS t(i)
            """,
            [data_rows],
        )

        cur.execute(
            "CREATE OR REPLACE TABLE ORDERS (ORDER_ID NUMBER(38,0) PRIMARY KEY, CUSTOMER VARCHAR, "
            "AMOUNT NUMBER(12,2), STATUS VARCHAR, UPDATED_AT TIMESTAMP_NTZ(6))"
        )
        statuses = "[" + ", ".join(_sql_str(s) for s in _ORDER_STATUSES) + "]"
        duck.execute(
            f"""
            INSERT INTO {q}.ORDERS
            SELECT
                i,
                'customer_' || lpad(CAST(i % 613 AS VARCHAR), 4, '0'),
                CAST((i * 104729) % 10000000 AS DECIMAL(12, 0)) * 0.01,
                {statuses}[1 + i % {len(_ORDER_STATUSES)}],
                TIMESTAMP '2024-01-01 00:00:00' + to_microseconds(i * 60000001)
            FROM range(1, {ORDER_ROWS} + 1) AS t(i)
            """
        )

        cur.execute(
            "CREATE OR REPLACE TABLE ALL_TYPES ("
            + ", ".join(f"{name} {typ}" for name, typ in ALL_TYPES_COLUMNS)
            + ")"
        )
        json_columns = {name for name, typ in ALL_TYPES_COLUMNS if typ in ("VARIANT", "OBJECT", "ARRAY")}
        names = [name for name, _ in ALL_TYPES_COLUMNS]
        duck.executemany(
            f"INSERT INTO {q}.ALL_TYPES VALUES ({', '.join('?' for _ in names)})",
            [
                [
                    json.dumps(v) if name in json_columns and v is not None else v
                    for name, v in zip(names, row, strict=True)
                ]
                for row in ALL_TYPES_ROWS
            ],
        )

        cur.execute(
            "CREATE OR REPLACE TABLE EMPTY_TABLE (ID NUMBER(38,0), NAME VARCHAR, PRICE NUMBER(10,2), "
            "CREATED_AT TIMESTAMP_NTZ, IS_VALID BOOLEAN)"
        )

        cur.execute(
            'CREATE OR REPLACE TABLE "Mixed Case" (ID NUMBER(38,0), "Weird ""col""" VARCHAR, "lower col" DATE)'
        )
        duck.executemany(f'INSERT INTO {q}."Mixed Case" VALUES (?, ?, ?)', [list(r) for r in MIXED_CASE_ROWS])
    finally:
        conn.close()
    for table in ("data", "ORDERS", "ALL_TYPES", "EMPTY_TABLE", "Mixed Case"):
        _refresh_table_stats((database, schema, table))


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------

_SEED_LOCK = threading.Lock()


def _free_port(host: str) -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    """True once the HTTP server answers (fakesnow replies 401 JSON to a token-less /session)."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=1)
        c.request("POST", "/session", body=b"{}")
        status = c.getresponse().status
        c.close()
        return status in (200, 401)
    except OSError:
        return False


class Emulator:
    """A loopback Snowflake for the real connector; all instances share fakesnow's global data."""

    HOST = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int | None = None,
        user: str = "sfduck",
        password: str | None = None,
        seed: bool = True,
        data_rows: int = 1_000_000,
        database: str = DEMO_DATABASE,
        schema: str = DEMO_SCHEMA,
    ) -> None:
        self._port = port
        self._user = user
        self._password = password if password is not None else secrets.token_urlsafe(24)
        self._seed = seed
        self._data_rows = data_rows
        self._database = database.upper()
        self._schema = schema.upper()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._settings: EmulatorSettings | None = None
        self.seed_seconds: float | None = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> EmulatorSettings:
        if self._settings is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._settings

    def start(self) -> EmulatorSettings:
        with self._lock:
            if self._settings is not None:
                return self._settings
            if self._seed:
                started = time.perf_counter()
                with _SEED_LOCK:
                    seed(self._data_rows, self._database, self._schema)
                self.seed_seconds = time.perf_counter() - started
            port = self._port or _free_port(self.HOST)
            app = _App(self._user, self._password).app
            logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
            server = uvicorn.Server(
                uvicorn.Config(app, host=self.HOST, port=port, log_level="warning", lifespan="off")
            )
            thread = threading.Thread(target=server.run, name=f"sfduck-emulator-{port}", daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not (server.started and _answers(self.HOST, port)):
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    raise RuntimeError(f"the emulator could not start on {self.HOST}:{port}")
                time.sleep(0.02)
            self._server, self._thread = server, thread
            self._settings = EmulatorSettings(
                host=self.HOST,
                port=port,
                protocol="http",
                account=DEFAULT_ACCOUNT,
                user=self._user,
                password=self._password,
                database=self._database,
                schema=self._schema,
            )
            return self._settings

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = self._thread = None
            self._settings = None

    def __enter__(self) -> EmulatorSettings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_EMBEDDED: Emulator | None = None
_EMBEDDED_LOCK = threading.Lock()


def embedded_emulator() -> EmulatorSettings:
    """The process-wide demo backend, started (and seeded with 1M rows) on first use."""
    global _EMBEDDED
    with _EMBEDDED_LOCK:
        if _EMBEDDED is None:
            # SFDUCK_DEMO_ROWS lets tests and quick demos seed a smaller "data" table
            emulator = Emulator(data_rows=int(os.environ.get("SFDUCK_DEMO_ROWS") or 1_000_000))
            emulator.start()
            _EMBEDDED = emulator
        return _EMBEDDED.settings


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: event.set())
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Serve an emulator until Ctrl-C/SIGTERM, printing how to reach it (password included:
    it is a throwaway local one)."""
    parser = argparse.ArgumentParser(prog="sfduck emulator", description="Run a local Snowflake emulator.")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--user", default="sfduck")
    parser.add_argument("--password", default=None, help="default: a random one, printed below")
    parser.add_argument("--rows", type=int, default=1_000_000, help='rows in the "data" table')
    parser.add_argument("--no-seed", action="store_true", help="start with no demo tables")
    args = parser.parse_args(argv)

    emulator = Emulator(
        port=args.port, user=args.user, password=args.password, seed=not args.no_seed, data_rows=args.rows
    )
    settings = emulator.start()
    for key, value in settings.as_env().items():
        print(f"export {key}={shlex.quote(value)}")
    print(json.dumps(dataclasses.asdict(settings)))
    sys.stdout.flush()
    stop = threading.Event()
    try:
        with _signals_set(stop):
            while not stop.wait(0.5):
                pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
