"""Run one sync in this process and fill the disk it writes to once it loads, then exit: what a
`sfduck sync` on a disk that fills up does. The test then reads the job from another process.

Usage: python tests/integration/sync_filling_disk.py SCHEMA TABLE TRANSPORT FILLER
Prints the sync's error on stdout and exits 1 (0 if the sync completed, which the test rejects).
"""

from __future__ import annotations

import contextlib
import sys

from sfduck_core.config import load_settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SfduckError
from sfduck_core.progress import SyncProgress


def main() -> None:
    schema, table, transport, filler = sys.argv[1:5]

    def fill_the_disk(progress: SyncProgress) -> None:
        if progress.phase == "loading":
            with open(filler, "ab") as out, contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * (64 << 10))
                    out.flush()

    try:
        SyncEngine(load_settings()).sync(SyncRequest(schema, table, transport=transport, force=True), fill_the_disk)
    except SfduckError as exc:
        print(exc, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
