"""Errors that carry a message meant for the user.

Front ends print `str(error)` and nothing else for these; anything else is a bug and is
reported as one. Messages never contain secrets.
"""

from __future__ import annotations


class SfduckError(Exception):
    """Base for every expected failure: bad input, unreachable source, busy file."""


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
    pass


class SyncAlreadyRunningError(SfduckError):
    pass


class JobNotFoundError(SfduckError):
    """No sync job (or schedule) with the id a caller gave."""


class StoreBusyError(SfduckError):
    """The DuckDB file is held by another process for longer than we are willing to wait."""


class SyncFailedError(SfduckError):
    pass


class NameCollisionError(SfduckError):
    """Two Snowflake names (tables or columns) that would be one DuckDB name."""


class SyncCancelledError(SfduckError):
    """An admin cancelled the sync, or it ran past SFDUCK_SYNC_TIMEOUT; the table is as it was."""
