"""Exact row counts, sizes and LAST_ALTERED in INFORMATION_SCHEMA.TABLES."""

from __future__ import annotations

from string import Template

import fakesnow.info_schema as fs_info_schema
import fakesnow.server as fs_server
import sqlglot
import sqlglot.errors
from fakesnow.fakes import FakeSnowflakeConnection
from sqlglot import exp

from sfduck_core.sqlident import qualified

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


def install_table_stats() -> None:
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


def record_table_change(sql: str, conn: FakeSnowflakeConnection) -> None:
    target = _changed_table(sql, conn)
    if target is not None:
        refresh_table_stats(target)


def refresh_table_stats(target: tuple[str, str, str]) -> None:
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
