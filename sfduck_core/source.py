"""Everything sfduck asks of Snowflake, through the real `snowflake.connector`.

The same code talks to a real account and to the embedded emulator; only the connection settings
differ. Connector errors are translated into messages a user can act on, and never include the
password.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import snowflake.connector
from snowflake.connector.errors import Error, OperationalError, ProgrammingError

from sfduck_core.config import SnowflakeSettings
from sfduck_core.errors import SourceError, TableNotFoundError
from sfduck_core.files import private_dir
from sfduck_core.sqlident import qualified, quote_ident, validate_identifier
from sfduck_core.typemap import ColumnPlan, plan_columns

LOGIN_FAILED_ERRNOS = {390100, 390144}
DEFAULT_MAX_FILE_SIZE = 16 * 1024 * 1024
TEMP_STAGE_PREFIX = "SFDUCK_TMP_"


@dataclass(frozen=True)
class TableInfo:
    table_name: str
    row_count: int | None
    size_bytes: int | None
    last_modified: dt.datetime | None
    table_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "table_name": self.table_name,
            "row_count": self.row_count,
            "size_bytes": self.size_bytes,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "table_type": self.table_type,
        }


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type_text: str
    nullable: bool


@dataclass(frozen=True)
class TableDescription:
    schema_name: str
    table_name: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...] = ()
    plans: tuple[ColumnPlan, ...] = field(default=(), repr=False)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def select(self, names: Sequence[str]) -> TableDescription:
        """The same table restricted to `names`, in table order (column selection)."""
        wanted = set(names)
        columns = tuple(c for c in self.columns if c.name in wanted)
        return TableDescription(self.schema_name, self.table_name, columns, self.primary_key,
                                tuple(plan_columns([(c.name, c.type_text) for c in columns])))


@dataclass(frozen=True)
class UnloadResult:
    rows_unloaded: int
    input_bytes: int
    output_bytes: int


def _message(exc: Error) -> str:
    msg = getattr(exc, "raw_msg", None) or getattr(exc, "msg", None) or str(exc)
    return str(msg).strip().splitlines()[0] if msg else type(exc).__name__


def translate_error(exc: Exception, settings: SnowflakeSettings, doing: str) -> SourceError:
    """A one-line message that says what failed and what to check; never the password."""
    errno = getattr(exc, "errno", None)
    where = settings.host or f"{settings.account}.snowflakecomputing.com"
    if errno in LOGIN_FAILED_ERRNOS or "Incorrect username or password" in str(exc):
        return SourceError(
            f"Snowflake refused the login for user {settings.user!r}: incorrect username or password. "
            "Check SNOWFLAKE_USER and SNOWFLAKE_PASSWORD."
        )
    if isinstance(exc, OperationalError) or errno in (250001, 250003, 251011, 251012):
        return SourceError(
            f"Cannot reach Snowflake at {where}"
            f"{':' + str(settings.port) if settings.port else ''} while {doing}: {_message(exc)}. "
            "Check the account/host settings and the network."
        )
    message = _message(exc) if isinstance(exc, Error) else str(exc)
    if settings.password:
        message = message.replace(settings.password, "***")
    # a ProgrammingError is Snowflake's answer to the statement; anything else (HTTP 5xx, a timeout,
    # a dropped connection) says nothing about whether another way would be allowed
    return SourceError(f"Snowflake error while {doing}: {message}", refused=isinstance(exc, ProgrammingError))


class SnowflakeSource:
    """One Snowflake session. Use as a context manager; each call is one or a few statements."""

    def __init__(self, settings: SnowflakeSettings):
        self.settings = settings
        self._conn: Any = None

    def __enter__(self) -> SnowflakeSource:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._conn is not None:
            return
        kwargs = self.settings.connect_kwargs()
        kwargs["session_parameters"] = {
            **kwargs.get("session_parameters", {}),
            # TIME values travel as text; without this they would lose their fractional seconds.
            "TIME_OUTPUT_FORMAT": "HH24:MI:SS.FF9",
        }
        # Server-side binding (`?`): with the default pyformat the connector %-formats the whole
        # statement whenever values are bound, which breaks any identifier or filter holding a `%`.
        kwargs["paramstyle"] = "qmark"
        try:
            self._conn = snowflake.connector.connect(**kwargs)
        except Exception as exc:  # the connector raises many types; all become one message
            raise translate_error(exc, self.settings, "logging in") from None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @property
    def database(self) -> str:
        if not self.settings.database:
            raise SourceError("No Snowflake database is configured: set SNOWFLAKE_DATABASE.")
        return self.settings.database

    def execute(self, sql: str, params: Sequence[Any] | None = None, doing: str = "running a query") -> Any:
        self.connect()
        cur = self._conn.cursor()
        try:
            cur.execute(sql, params)
        except Exception as exc:
            cur.close()
            raise translate_error(exc, self.settings, doing) from None
        return cur

    def query(self, sql: str, params: Sequence[Any] | None = None, doing: str = "running a query") -> list[dict]:
        cur = self.execute(sql, params, doing)
        try:
            names = [d[0].lower() for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    # --- discovery -------------------------------------------------------------------------

    def schema_exists(self, schema: str) -> bool:
        validate_identifier(schema, "schema name")
        rows = self.query(
            f"SELECT SCHEMA_NAME FROM {quote_ident(self.database)}.INFORMATION_SCHEMA.SCHEMATA "
            "WHERE SCHEMA_NAME = ?",
            (schema,),
            doing=f"looking up schema {schema!r}",
        )
        return bool(rows)

    def list_tables(self, schema: str) -> list[TableInfo]:
        """Tables and views of `schema` with Snowflake's own size statistics."""
        tables = self._tables(schema)
        if not tables and not self.schema_exists(schema):
            raise TableNotFoundError(f"Schema {schema!r} does not exist in database {self.database!r}.")
        return tables

    def table_info(self, schema: str, table: str) -> TableInfo:
        validate_identifier(table, "table name")
        found = self._tables(schema, table)
        if found:
            return found[0]
        if not self.schema_exists(schema):
            raise TableNotFoundError(f"Schema {schema!r} does not exist in database {self.database!r}.")
        raise TableNotFoundError(
            f"Table {table!r} does not exist in {self.database}.{schema} "
            "(names are case-sensitive, as Snowflake stores them)."
        )

    def _tables(self, schema: str, table: str | None = None) -> list[TableInfo]:
        validate_identifier(schema, "schema name")
        only_one = "AND TABLE_NAME = ? " if table is not None else ""
        rows = self.query(
            "SELECT TABLE_NAME, ROW_COUNT, BYTES, LAST_ALTERED, TABLE_TYPE "
            f"FROM {quote_ident(self.database)}.INFORMATION_SCHEMA.TABLES "
            f"WHERE TABLE_SCHEMA = ? {only_one}ORDER BY TABLE_NAME",
            (schema,) if table is None else (schema, table),
            doing=f"listing the tables of {schema!r}",
        )
        return [
            TableInfo(
                table_name=r["table_name"],
                row_count=None if r["row_count"] is None else int(r["row_count"]),
                size_bytes=None if r["bytes"] is None else int(r["bytes"]),
                last_modified=r["last_altered"],
                table_type=r["table_type"],
            )
            for r in rows
        ]

    def describe(self, schema: str, table: str, info: TableInfo | None = None) -> TableDescription:
        """Columns from DESC TABLE (DESC VIEW for views) plus the primary key from SHOW PRIMARY KEYS.

        `info` is the caller's fresh lookup of the table; without it the table is looked up first,
        for a clear "does not exist" and to know whether it is a view.
        """
        info = info or self.table_info(schema, table)
        name = qualified(self.database, schema, table)
        kind = "VIEW" if "VIEW" in str(info.table_type or "").upper() else "TABLE"
        rows = self.query(f"DESC {kind} {name}", doing=f"describing {schema}.{table}")
        columns = tuple(
            SourceColumn(r["name"], r["type"], str(r.get("null?", "Y")).upper() == "Y")
            for r in rows
            if str(r.get("kind", "COLUMN")).upper() == "COLUMN"
        )
        primary_key: tuple[str, ...] = ()
        if kind == "TABLE":  # views have no keys; a key can still be given at registration
            keys = self.query(f"SHOW PRIMARY KEYS IN TABLE {name}", doing=f"reading the primary key of {table}")
            primary_key = tuple(
                r["column_name"] for r in sorted(keys, key=lambda r: int(r.get("key_sequence") or 0))
            )
        plans = tuple(plan_columns([(c.name, c.type_text) for c in columns]))
        return TableDescription(schema, table, columns, primary_key, plans)

    # --- transfer --------------------------------------------------------------------------

    def select_sql(self, desc: TableDescription, for_stage: bool, where: str | None = None) -> str:
        projection = ", ".join(p.snowflake_projection(for_stage) for p in desc.plans)
        sql = f"SELECT {projection} FROM {qualified(self.database, desc.schema_name, desc.table_name)}"
        return f"{sql} WHERE {where}" if where else sql

    def count_null(self, desc: TableDescription, column: str) -> int:
        """Rows an incremental bound can never select, so they are reported rather than lost silently."""
        cur = self.execute(
            f"SELECT COUNT(*) FROM {qualified(self.database, desc.schema_name, desc.table_name)} "
            f"WHERE {quote_ident(column)} IS NULL",
            doing="counting rows with a NULL incremental key",
        )
        try:
            return int(cur.fetchone()[0])
        finally:
            cur.close()

    def create_temp_stage(self, schema: str) -> str:
        """A temporary stage in the table's schema; it disappears with the session anyway."""
        stage = qualified(self.database, schema, f"{TEMP_STAGE_PREFIX}{uuid.uuid4().hex.upper()}")
        self.execute(
            f"CREATE TEMPORARY STAGE {stage} FILE_FORMAT = (TYPE = PARQUET)", doing="creating a temporary stage"
        ).close()
        return stage

    def drop_stage(self, stage: str) -> None:
        self.execute(f"DROP STAGE IF EXISTS {stage}", doing="dropping the temporary stage").close()

    def unload(self, stage: str, prefix: str, select_sql: str, params: Sequence[Any] | None = None,
               max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> UnloadResult:
        """COPY INTO the stage as Parquet with a consistent physical schema across files."""
        with contextlib.suppress(SourceError):  # an account may not allow changing it; casts cover us
            self.execute("ALTER SESSION SET ENABLE_UNLOAD_PHYSICAL_TYPE_OPTIMIZATION = FALSE").close()
        cur = self.execute(
            f"COPY INTO @{stage}/{prefix} FROM ({select_sql}) "
            "FILE_FORMAT = (TYPE = PARQUET COMPRESSION = SNAPPY) HEADER = TRUE OVERWRITE = TRUE "
            f"MAX_FILE_SIZE = {int(max_file_size)}",
            params,
            doing="unloading the table to the stage",
        )
        try:
            row = cur.fetchone()
        finally:
            cur.close()
        if not row:
            return UnloadResult(0, 0, 0)
        return UnloadResult(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    def list_stage(self, stage: str, prefix: str) -> list[tuple[str, int]]:
        """(file name, size) of what the unload wrote, for per-file download progress."""
        rows = self.query(f"LIST @{stage}/{prefix}", doing="listing the stage")
        return [(r["name"].rsplit("/", 1)[-1], int(r.get("size") or 0)) for r in rows]

    def download(self, stage: str, prefix: str, local_dir: Path, parallel: int = 8) -> int:
        """GET every file under the prefix, in parallel, into an existing local directory; returns
        bytes received. (The caller watches the directory for per-file progress.)"""
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", prefix):
            raise SourceError(f"Unexpected stage prefix {prefix!r}.")
        private_dir(local_dir)
        target = local_dir.resolve().as_posix()
        if "'" in target or "\\" in target:
            raise SourceError(f"The data directory {target!r} contains a quote or backslash; choose another "
                              "SFDUCK_DATA_DIR.")
        cur = self.execute(
            f"GET @{stage}/{prefix} 'file://{target}/' PARALLEL = {int(parallel)}", doing="downloading the files"
        )
        try:
            rows = cur.fetchall()
        finally:
            cur.close()
        failed = [r for r in rows if str(r[2]).upper() not in ("DOWNLOADED", "SKIPPED")]
        if failed:
            raise SourceError(f"Downloading {failed[0][0]} failed: {failed[0][3] or failed[0][2]}")
        return sum(int(r[1] or 0) for r in rows)

    def arrow_result(self, select_sql: str, params: Sequence[Any] | None = None) -> tuple[int, Iterator[pa.Table]]:
        """(rows Snowflake will send, Arrow tables consumed as they come so memory stays bounded)."""
        cur = self.execute(select_sql, params, doing="reading the table")
        total = int(cur.rowcount or 0)

        def batches() -> Iterator[pa.Table]:
            try:
                yield from cur.fetch_arrow_batches()
            except Error as exc:
                raise translate_error(exc, self.settings, "streaming the result") from None
            finally:
                cur.close()

        return total, batches()
