"""Errors in Snowflake's shape (errno, sqlstate), as the connector raises them."""

from __future__ import annotations

import snowflake.connector.errors


def syntax_error(detail: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nsyntax error: {detail}", errno=1003, sqlstate="42000"
    )


def unsupported(what: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"{what} is not supported by the sfduck emulator", errno=9999, sqlstate="99999"
    )


def stage_not_found(fqname: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\nStage '{fqname}' does not exist or not authorized.",
        errno=2003,
        sqlstate="02000",
    )
