"""Owner-only files and folders: synced data, login state and keys are nobody else's business on
a shared machine. Only what sfduck creates is restricted; modes an administrator set are kept.

Every entry point (the server, the dashboard, the command line) calls `owner_only_from_now_on()`
first, so files written by libraries that know no modes (DuckDB, DuckLake's Parquet writer, the
Snowflake connector's downloads, loggers) are owner-only too, not only the ones created here."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077


def owner_only_from_now_on() -> None:
    """Make every file and folder this process (and its children) creates from now on owner-only.

    A process-wide umask, set once by each entry point: per-file chmods miss whatever a library
    creates on its own (a lake's Parquet files, its catalog, downloaded files, logs).
    """
    os.umask(PRIVATE_UMASK)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """The folder, created (with any missing parents) readable by its owner only."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create an empty owner-only file unless it exists; True when this call created it."""
    private_dir(Path(path).parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.fchmod(fd, PRIVATE_FILE_MODE)
    os.close(fd)
    return True


def make_private(path: str | os.PathLike[str]) -> None:
    """Restrict a file sfduck has just created through a library that knows no modes (DuckDB)."""
    if os.path.exists(path):
        os.chmod(path, PRIVATE_FILE_MODE)
