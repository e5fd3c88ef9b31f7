"""Run one sync in this process and freeze it at a chosen point, so a test can SIGKILL it there.

Usage: python tests/sync_until.py SCHEMA TABLE TRANSPORT PHASE [STRATEGY]
Prints PAUSED on stdout once the sync reaches PHASE (for `loading` only after rows have been
inserted, i.e. inside the open DuckDB transaction), then sleeps until killed. PHASE `committed`:
after the data's COMMIT, before the job is recorded in the metadata database (issue 21 item 3).
"""

from __future__ import annotations

import sys
import time

from sfduck_core.config import load_settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.progress import SyncProgress
from sfduck_core.store import Store


def _freeze() -> None:
    print("PAUSED", flush=True)
    time.sleep(3600)


def main() -> None:
    schema, table, transport, phase = sys.argv[1:5]
    strategy = sys.argv[5] if len(sys.argv) > 5 else "full"

    if phase == "committed":
        def complete_job(*args: object, **kwargs: object) -> None:
            _freeze()

        Store.complete_job = complete_job  # type: ignore[method-assign]

    def on_progress(p: SyncProgress) -> None:
        reached = p.phase == phase and (phase != "loading" or p.rows_done > 0)
        if phase == "downloading":
            reached = p.phase == phase and (p.files_done >= 1 or p.rows_done > 0)  # stage files / arrow rows
        if reached:
            _freeze()

    SyncEngine(load_settings()).sync(SyncRequest(schema, table, strategy=strategy, transport=transport, force=True),
                                     on_progress)


if __name__ == "__main__":
    main()
