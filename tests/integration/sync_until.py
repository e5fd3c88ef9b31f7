"""Run one sync in this process and freeze it at a chosen point, so a test can SIGKILL it there.

Usage: python tests/sync_until.py SCHEMA TABLE TRANSPORT PHASE [STRATEGY]
Prints PAUSED on stdout once the sync reaches PHASE (for `loading` only after rows have been
inserted, i.e. inside the open DuckDB transaction), then sleeps until killed.
"""

from __future__ import annotations

import sys
import time

from sfduck_core.config import load_settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.progress import SyncProgress


def main() -> None:
    schema, table, transport, phase = sys.argv[1:5]
    strategy = sys.argv[5] if len(sys.argv) > 5 else "full"

    def on_progress(p: SyncProgress) -> None:
        reached = p.phase == phase and (phase != "loading" or p.rows_done > 0)
        if phase == "downloading":
            reached = p.phase == phase and (p.files_done >= 1 or p.rows_done > 0)  # stage files / arrow rows
        if reached:
            print("PAUSED", flush=True)
            time.sleep(3600)

    SyncEngine(load_settings()).sync(SyncRequest(schema, table, strategy=strategy, transport=transport, force=True),
                                     on_progress)


if __name__ == "__main__":
    main()
