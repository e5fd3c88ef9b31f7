"""Where a running sfduck server on this machine can be reached, so a demo-mode command uses it.

Without it, every `sfduck` command in demo mode boots its own Snowflake emulator (about 6 s and
370 MB) and competes with the server for the DuckDB file. The server records its URL and process id
in its state folder (beside the DuckDB file) while it runs; a command in demo mode that finds a live
record drives that server over the API as the demo admin (the demo passwords are public, and demo
mode never runs on an account's data).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

RECORD_FILE = "server.json"


def record_path(state_dir: Path) -> Path:
    return state_dir / RECORD_FILE


def record(state_dir: Path, url: str, default_schema: str | None = None) -> Path:
    """Say that this process serves `url`, with its default Snowflake schema (written atomically;
    removed by `forget`)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = record_path(state_dir)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "schema": default_schema}))
    tmp.replace(path)
    return path


def forget(state_dir: Path) -> None:
    """Remove this process's record (another process's stays)."""
    path = record_path(state_dir)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def running_server(state_dir: Path) -> dict[str, Any] | None:
    """The server recorded in `state_dir` (`url`, `pid`, `schema`), if its process is still alive."""
    try:
        found = json.loads(record_path(state_dir).read_text())
        pid = int(found["pid"])
        str(found["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return dict(found)
