"""The package layout's promises: the core finds the emulator only through entry points, and the
unit tests need no emulator at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sfduck_core.config import Settings
from sfduck_core.errors import ConfigError
from sfduck_core.plugins import command, snowflake_source

ROOT = Path(__file__).resolve().parents[2]


def settings(demo: bool, tmp_path: Path) -> Settings:
    from sfduck_core.config import SnowflakeSettings

    account = None if demo else "acme-prod"
    return Settings(snowflake=SnowflakeSettings(account=account, user="u", password="p"),
                    duckdb_path=tmp_path / "x.duckdb", data_dir=tmp_path, demo=demo)


def test_a_configured_account_is_used_as_configured(tmp_path: Path) -> None:
    configured = settings(False, tmp_path)
    assert snowflake_source(configured)() is configured.snowflake


def test_demo_mode_finds_the_emulator_through_its_entry_point(tmp_path: Path) -> None:
    import sfduck_emulator

    assert snowflake_source(settings(True, tmp_path)) is sfduck_emulator.embedded_snowflake


def test_an_unknown_plugin_command_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not available"):
        command("no-such-command")


def test_unit_tests_load_no_emulator_and_no_browser() -> None:
    modules = sorted(p.stem for p in (ROOT / "tests" / "unit").glob("test_*.py"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('tests.unit.' + m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fakesnow', 'uvicorn', 'playwright')"
        " or m.startswith('sfduck_emulator.'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_sfduck_command_is_installed_with_the_same_subcommands() -> None:
    script = Path(sys.executable).with_name("sfduck")
    assert script.exists(), "run ./scripts/bootstrap.sh: it installs the project (pip install -e .)"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("tables", "describe", "register", "sync", "status", "history", "unregister", "emulator"):
        assert sub in out
