"""Issue 18 item 11: every file sfduck creates is readable by its own user only, whatever the umask
it was started with: a lake's catalog and Parquet files, downloads, the DuckDB file, login state."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import env_for

ROOT = Path(__file__).resolve().parents[2]


def modes_under(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")}


def test_a_lake_synced_by_the_cli_is_owner_only(emulator: EmulatorSettings, tmp_path: Path) -> None:
    state = tmp_path / "state"  # everything below it is created by sfduck
    env = env_for(emulator, state, "lake")
    old = os.umask(0o022)  # the usual umask, inherited by the CLI: group and others could read
    try:
        for args in (("register", emulator.schema, "ORDERS"), ("sync", emulator.schema, "ORDERS")):
            done = subprocess.run([sys.executable, "-m", "sfduck_core", *args], env=env, cwd=ROOT, text=True,
                                  capture_output=True, timeout=180)
            assert done.returncode == 0, done.stderr
    finally:
        os.umask(old)
    modes = modes_under(state)
    parquet = [name for name in modes if name.endswith(".parquet")]
    assert parquet, f"the sync wrote no Parquet file: {sorted(modes)}"
    assert "lake/catalog.sqlite" in modes
    loose = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (state / name).is_dir() else 0o600)}
    assert not loose, f"readable by others: {loose}"
