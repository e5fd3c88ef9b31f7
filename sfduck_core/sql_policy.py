"""What the analysts' SQL box may reach: the synced tables, and DuckDB's built-in functions that
compute on values. Everything else is refused, whatever it is called.

Deny by default, on DuckDB's own parse of the query (`json_serialize_sql`, run on the connection
that will run it, so both read the same tree; comments, case and quoting are gone by then). Every
node of the tree is visited:

- a function call (scalar, aggregate, window, macro) must name a function that a pristine DuckDB,
  with no extension loaded, has in `system.main` or `system.pg_catalog`, minus the few that read
  the server's state (settings, variables, the search path, sequences); a built-in macro counts only
  if its own body passes this check (so `pg_get_viewdef`, which reads `duckdb_views()`, does not).
  Functions of the loaded extensions (`postgres_query`, `sqlite_scan`, `ducklake_*`...) are not in
  that list, nor is anything an extension may add later;
- a table function must be one of SAFE_TABLE_FUNCTIONS (ranges and unnesting): no `read_*`,
  `glob`, `query`, `query_table`, `duckdb_*`, `pragma_*`, `which_secret`, scanner...;
- a table name must be a synced table: a table of the target's own catalog outside sfduck's and
  DuckDB's system schemas, or a CTE of the query. A name that could also resolve elsewhere (a
  system view such as `duckdb_databases`, a schema or catalog of the same name) is refused rather
  than guessed at.

This runs in the sandboxed child (see `sfduck_core.sql_sandbox`) before the query; DuckDB's own
lock-down settings (external access off, configuration locked) stay as a second wall.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
# Built-ins that report the server rather than compute on their arguments.
STATE_FUNCTIONS = frozenset({
    "current_setting", "getvariable", "current_query", "current_schemas", "in_search_path", "nextval",
    "currval", "get_block_size", "sleep_ms", "pg_sleep",
})
# Written as calls, but expressions of the binder rather than catalog functions.
PARSER_FUNCTIONS = frozenset({("main", "unnest"), ("main", "unlist")})
# Schemas of the target that hold no synced table: sfduck's metadata and DuckDB's catalog views.
HIDDEN_SCHEMAS = frozenset({"sfduck_meta", "information_schema", "pg_catalog"})
FUNCTION_SCHEMAS = ("main", "pg_catalog")  # where DuckDB keeps its built-ins, in lookup order
_OUTSIDE = "Only the synced tables can be queried"


class PolicyError(Exception):
    """The query reaches something the SQL box does not allow; the message says what and why."""


@dataclass(frozen=True)
class Functions:
    """DuckDB's built-in functions: which exist (to resolve an unqualified name as DuckDB would)
    and which the SQL box allows, each as (schema, name)."""

    existing: frozenset[tuple[str, str]]
    allowed: frozenset[tuple[str, str]]

    def as_json(self) -> dict[str, list[list[str]]]:
        """For the request the dashboard process sends to the sandboxed child."""
        return {"existing": sorted(map(list, self.existing)), "allowed": sorted(map(list, self.allowed))}

    @classmethod
    def from_json(cls, data: dict[str, list[list[str]]]) -> Functions:
        return cls(frozenset(map(tuple, data["existing"])), frozenset(map(tuple, data["allowed"])))

    @property
    def names(self) -> list[str]:
        """The allowed function names, sorted (for the documentation and its test)."""
        return sorted({name for _, name in self.allowed})


@dataclass(frozen=True)
class Tables:
    """What a table name in the query may resolve to, read from the sandbox's connection."""

    catalog: str
    synced: frozenset[tuple[str, str]]  # (schema, table) of the target's synced tables, lower case
    catalogs: frozenset[str]  # every attached database, which a two-part name could also mean
    elsewhere: frozenset[str]  # schema, table and view names of DuckDB's own catalogs (system, temp)


def _lower(value: Any) -> str:
    return str(value or "").lower()


@functools.cache
def builtin_functions() -> Functions:
    """The functions of a pristine in-memory DuckDB (no extension loaded), minus the state readers,
    with each built-in macro allowed only if its body passes the same check. Computed once per
    process (about 0.3 s), by the dashboard process, which hands it to each child."""
    with duckdb.connect(config={"autoload_known_extensions": False, "autoinstall_known_extensions": False}) as con:
        rows = con.execute(
            "SELECT DISTINCT schema_name, function_name, function_type, macro_definition FROM duckdb_functions() "
            "WHERE database_name = 'system' AND function_type IN ('scalar', 'aggregate', 'macro')").fetchall()
        existing = frozenset({(_lower(schema), _lower(name)) for schema, name, _, _ in rows} | PARSER_FUNCTIONS)
        allowed = {(_lower(schema), _lower(name)) for schema, name, kind, _ in rows
                   if kind != "macro" and _lower(name) not in STATE_FUNCTIONS} | PARSER_FUNCTIONS
        macros = {(_lower(schema), _lower(name)): definition for schema, name, kind, definition in rows
                  if kind == "macro" and _lower(name) not in STATE_FUNCTIONS}
        no_tables = Tables("", frozenset(), frozenset(), frozenset())
        changed = True
        while changed:  # a macro may call another macro: allow until nothing more passes
            changed = False
            for key, definition in macros.items():
                if key in allowed or not definition:
                    continue
                try:
                    check_query(con, f"SELECT {definition}", Functions(existing, frozenset(allowed)), no_tables)
                except PolicyError:
                    continue
                allowed.add(key)
                changed = True
    return Functions(existing, frozenset(allowed))


def target_tables(con: duckdb.DuckDBPyConnection) -> Tables:
    """The synced tables of the connection's current database, and the names that could shadow them."""
    catalog = _lower(con.execute("SELECT current_database()").fetchone()[0])
    synced = frozenset(
        (_lower(schema), _lower(table)) for schema, table in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE lower(database_name) = ?", [catalog]).fetchall()
        if _lower(schema) not in HIDDEN_SCHEMAS)
    catalogs = frozenset(_lower(r[0]) for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall())
    elsewhere = frozenset(_lower(r[0]) for r in con.execute(
        "SELECT schema_name FROM duckdb_schemas() WHERE database_name IN ('system', 'temp') "
        "UNION SELECT table_name FROM duckdb_tables() WHERE database_name IN ('system', 'temp') "
        "UNION SELECT view_name FROM duckdb_views() WHERE database_name IN ('system', 'temp')").fetchall())
    return Tables(catalog, synced, catalogs, elsewhere)


def parse_tree(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of `sql` as JSON; a query DuckDB cannot serialize is refused."""
    tree = json.loads(con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise PolicyError(f"The SQL box could not check this query ({tree.get('error_message')}); write it as "
                          "a plain SELECT over the synced tables.")
    return tree


def check_query(con: duckdb.DuckDBPyConnection, sql: str, functions: Functions, tables: Tables) -> None:
    """Raise PolicyError, naming the first thing `sql` reaches that the SQL box does not allow."""
    tree = parse_tree(con, sql)
    _Checker(functions, tables, frozenset(_cte_names(tree))).visit(tree)


def _cte_names(node: Any) -> Iterator[str]:
    for child in _children(node):
        yield from _cte_names(child)
    if isinstance(node, dict) and isinstance(node.get("cte_map"), dict):
        for entry in node["cte_map"].get("map") or []:
            yield _lower(entry.get("key"))


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return node
    return []


@dataclass(frozen=True)
class _Checker:
    functions: Functions
    tables: Tables
    ctes: frozenset[str]

    def visit(self, node: Any) -> None:
        if isinstance(node, dict):
            kind, cls = node.get("type"), node.get("class")
            if cls == "FUNCTION":
                self._function(node, "function")
            elif cls == "WINDOW" and kind == "WINDOW_AGGREGATE":
                self._function(node, "window function")
            elif cls == "WINDOW":
                self._qualifiers(node, "window function")  # row_number, lag...: the engine's own
            elif cls is None and kind == "BASE_TABLE":
                self._table(node)
            elif cls is None and kind == "TABLE_FUNCTION":
                self._table_function(node)
                node = {k: v for k, v in node.items() if k != "function"}  # its arguments are visited
            elif cls is None and kind == "SHOW_REF" and node.get("query") is None:
                raise PolicyError("The SQL box shows no database listing; use DESCRIBE \"SCHEMA\".\"TABLE\" "
                                  "(or SUMMARIZE), or the Tables page.")
        for child in _children(node):
            self.visit(child)

    def _qualifiers(self, node: dict[str, Any], what: str) -> str:
        name = _lower(node.get("function_name"))
        catalog, schema = _lower(node.get("catalog")), _lower(node.get("schema"))
        if catalog not in ("", "system") or schema not in ("", *FUNCTION_SCHEMAS):
            raise PolicyError(f"The SQL box runs only DuckDB's built-in functions; the {what} "
                              f"{'.'.join(filter(None, (catalog, schema, name)))} is not one of them.")
        return name

    def _function(self, node: dict[str, Any], what: str) -> None:
        name = self._qualifiers(node, what)
        schema = _lower(node.get("schema"))
        if not schema:  # resolved as DuckDB does: main first, then pg_catalog
            schema = next((s for s in FUNCTION_SCHEMAS if (s, name) in self.functions.existing), "main")
        if (schema, name) in self.functions.allowed:
            return
        if (schema, name) in self.functions.existing:
            raise PolicyError(f"The SQL box does not allow the {what} {name}(): it reports the server's "
                              "settings or state rather than computing on your data.")
        raise PolicyError(f"The SQL box runs only DuckDB's built-in functions; {name}() is not one of them "
                          "(no file, database, scanner or DuckLake function is reachable).")

    def _table_function(self, node: dict[str, Any]) -> None:
        function = node.get("function") or {}
        name = self._qualifiers(function, "table function")
        if name not in SAFE_TABLE_FUNCTIONS:
            raise PolicyError(f"The SQL box reads only the synced tables: the table function {name}() is not "
                              "allowed (no file, network, other database, setting or secret is reachable; table "
                              f"functions allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))}).")
        for child in function.get("children") or []:
            self.visit(child)

    def _table(self, node: dict[str, Any]) -> None:
        catalog, schema, table = (_lower(node.get(k)) for k in ("catalog_name", "schema_name", "table_name"))
        shown = ".".join(filter(None, (node.get("catalog_name"), node.get("schema_name"), node.get("table_name"))))
        tables = self.tables
        if catalog:
            ok = catalog == tables.catalog and (schema, table) in tables.synced
        elif schema:  # schema.table, unless the schema is also a catalog or one of DuckDB's own
            ok = ((schema, table) in tables.synced and schema not in tables.catalogs
                  and schema not in tables.elsewhere)
        else:  # a CTE, or a table of the default schema; never a name DuckDB also has
            ok = table not in tables.elsewhere and (table in self.ctes or ("main", table) in tables.synced)
        if not ok and not catalog and not schema and table in self.ctes:
            raise PolicyError(f"The CTE name {shown} is also the name of one of DuckDB's own tables or views; "
                              "rename the CTE.")
        if not ok:
            raise PolicyError(f"{_OUTSIDE}: {shown} is not one of them. Name a synced table as "
                              "\"SCHEMA\".\"TABLE\" (the Tables page lists them).")


if __name__ == "__main__":  # the README points here for the exact list
    print("Functions:", ", ".join(builtin_functions().names))
    print("Table functions:", ", ".join(sorted(SAFE_TABLE_FUNCTIONS)))
