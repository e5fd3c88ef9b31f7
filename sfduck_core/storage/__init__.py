"""Where synced tables live: one `Storage` per target kind, chosen by `open_storage`.

Callers never ask which kind they have: they use the Storage's methods and ask its
`capabilities` for what only some targets can do. The implementations (`duckdb_file`,
`ducklake`) are private to this package (an import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from sfduck_core.config import Target
from sfduck_core.errors import Holder, StoreBusyError
from sfduck_core.storage.base import (
    DONT_WAIT,
    METADATA_SCHEMA,
    STAGING_PREFIX,
    Capabilities,
    Snapshot,
    Storage,
    UnsupportedByTargetError,
    WaitPolicy,
    wait_policy,
    waiting_for_data,
)
from sfduck_core.storage.duckdb_file import WARM, DuckDBFile
from sfduck_core.storage.ducklake import (
    EXTENSION_PACKAGES,
    DuckLake,
    extension_file,
    lake_setup_sql,
)

__all__ = ["DONT_WAIT", "EXTENSION_PACKAGES", "METADATA_SCHEMA", "STAGING_PREFIX", "Capabilities", "Holder",
           "Snapshot", "Storage", "StoreBusyError", "UnsupportedByTargetError", "WaitPolicy",
           "extension_file", "lake_setup_sql", "open_storage", "release_all", "wait_policy",
           "waiting_for_data"]

_KINDS: dict[str, type[Storage]] = {"duckdb": DuckDBFile, "ducklake": DuckLake}


def open_storage(target: Target, *, lock_timeout_s: float = 30.0, memory_limit: str = "256MB",
                 keep_warm_s: float = 0.0) -> Storage:
    """The Storage for `target` (nothing is opened until a `connect`). `keep_warm_s`: how long a
    DuckDB file stays open in this process after a use (a server's choice); 0 closes it with the
    last connection."""
    try:
        kind = _KINDS[target.kind]
    except KeyError:
        raise ValueError(f"No storage for target kind {target.kind!r}") from None
    return kind(target, lock_timeout_s=lock_timeout_s, memory_limit=memory_limit, keep_warm_s=keep_warm_s)


def release_all() -> None:
    """Let go of every DuckDB file this process keeps warm (before a child process opens one)."""
    WARM.release()
