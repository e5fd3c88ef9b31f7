"""Query responses in the shape of Snowflake's REST protocol."""

from __future__ import annotations

import uuid
from typing import Any

import snowflake.connector.errors
from fakesnow.fakes import FakeSnowflakeConnection
from starlette.responses import JSONResponse


def error_response(e: snowflake.connector.errors.Error) -> JSONResponse:
    code = f"{e.errno:06d}" if isinstance(e.errno, int) and e.errno > 0 else "009999"
    return JSONResponse(
        {
            "data": {"errorCode": code, "sqlState": e.sqlstate},
            "code": code,
            "message": e.msg,
            "success": False,
        }
    )


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


def rows_response(
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


def status_response(conn: FakeSnowflakeConnection, message: str) -> JSONResponse:
    return rows_response(conn, [("status", "text")], [[message]])
