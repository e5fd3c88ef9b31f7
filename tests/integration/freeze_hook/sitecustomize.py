"""Loaded by a server process a test started with this folder first on PYTHONPATH: freezes the
next sync in the phase SFDUCK_TEST_FREEZE_PHASE (once it has data on disk: a downloaded file or
spooled rows) while the file SFDUCK_TEST_FREEZE_FLAG exists, so that the test can SIGKILL the
server at that very point (what tests/integration/sync_until.py does for a CLI process).

Nothing else changes: the sync reports its progress as always (the API shows the frozen phase),
then its thread waits until the process dies."""

from __future__ import annotations

import os
import time

PHASE = os.environ.get("SFDUCK_TEST_FREEZE_PHASE")
FLAG = os.environ.get("SFDUCK_TEST_FREEZE_FLAG")

if PHASE and FLAG:
    from sfduck_core.engine import SyncRun

    _report = SyncRun.report

    def _report_then_freeze(self: SyncRun, **changes: object) -> None:
        _report(self, **changes)
        p = self.progress
        if p.phase == PHASE and (p.files_done >= 1 or p.rows_done > 0) and os.path.exists(FLAG):
            while True:  # until the test kills the process
                time.sleep(3600)

    SyncRun.report = _report_then_freeze  # type: ignore[method-assign]
