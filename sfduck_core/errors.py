"""Errors that carry a message meant for the user.

Front ends print `str(error)` and nothing else for these; anything else is a bug and is
reported as one. Messages never contain secrets.

An error holds the facts (what went wrong, with which table); when the user can fix it, `remedy`
names the fix (a key of REMEDIES) and `facts` the names it needs. Each front end words that fix in
its own language: the command line names commands and flags, the API endpoints and fields, the
dashboard pages and buttons (`worded()` with that front end's hints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# What the user can do about an error, by key; every front end words each one (see `worded`).
REMEDIES = ("register", "incremental_key", "primary_key", "exclude_columns")


class SfduckError(Exception):
    """Base for every expected failure: bad input, unreachable source, busy file."""

    remedy: str | None = None

    def __init__(self, message: str, *, remedy: str | None = None, **facts: str) -> None:
        super().__init__(message)
        if remedy is not None:
            self.remedy = remedy
        self.facts: dict[str, str] = facts


def worded(exc: BaseException, hints: Mapping[str, str]) -> str:
    """The error's message followed by the fix in one front end's words (`hints[remedy]`, with
    the error's facts filled in); only the message when that front end has no words for it."""
    message = str(exc)
    remedy = getattr(exc, "remedy", None)
    hint = hints.get(remedy) if remedy else None
    if not hint:
        return message
    try:
        return f"{message} {hint.format(**getattr(exc, 'facts', {}))}"
    except (KeyError, IndexError):
        return message


class ConfigError(SfduckError):
    pass


class InvalidIdentifierError(SfduckError):
    pass


class UnsafeFilterError(SfduckError):
    pass


class SourceError(SfduckError):
    """Snowflake refused or could not be reached. `refused`: Snowflake answered and said no (a
    statement it would not run), as opposed to an outage, where trying another way is pointless."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class TableNotFoundError(SfduckError):
    pass


class NotRegisteredError(SfduckError):
    """The table is not (or no longer) registered: the fix is to register it."""

    def __init__(self, schema: str, table: str, message: str | None = None) -> None:
        super().__init__(message or f"{schema}.{table} is not registered for syncing.", remedy="register",
                         schema=schema, table=table)


class MissingIncrementalKeyError(SfduckError):
    """An incremental sync of a table registered without an incremental key, and none given."""

    def __init__(self, schema: str, table: str) -> None:
        super().__init__(f"An incremental sync of {schema}.{table} needs an incremental key, and the table is "
                         "registered without one.", remedy="incremental_key", schema=schema, table=table)


class SyncAlreadyRunningError(SfduckError):
    pass


class JobNotFoundError(SfduckError):
    """No sync job (or schedule) with the id a caller gave."""


@dataclass(frozen=True)
class Holder:
    """The process holding a busy DuckDB file, as DuckDB's lock error names it ("PID n"), with the
    name of its program when it can still be seen (None: it ended or is another user's)."""

    pid: int
    program: str | None = None

    def __str__(self) -> str:
        return f"{self.program} (pid {self.pid})" if self.program else f"pid {self.pid}"


class StoreBusyError(SfduckError):
    """The DuckDB file is held by another process for longer than we are willing to wait.
    `holder`: that process, when known, so a front end can say whom it waits for."""

    def __init__(self, message: str, *, holder: Holder | None = None, **facts: str) -> None:
        super().__init__(message, **facts)
        self.holder = holder


class SyncFailedError(SfduckError):
    pass


class NameCollisionError(SfduckError):
    """Two Snowflake names (tables or columns) that would be one DuckDB name."""


class SyncCancelledError(SfduckError):
    """An admin cancelled the sync, or it ran past SFDUCK_SYNC_TIMEOUT; the table is as it was."""


class ServerUnreachableError(SfduckError):
    """The sfduck server given by --server (or found running in demo mode) does not answer."""
