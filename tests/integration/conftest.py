"""Shared fixtures: one emulator per test session, driven by the real connector over HTTP, and a
fresh DuckDB file per test."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import snowflake.connector

from sfduck_core.config import Settings, SnowflakeSettings
from sfduck_core.engine import SyncEngine
from sfduck_core.sqlident import quote_ident
from sfduck_emulator.server import Emulator
from sfduck_emulator.settings import EmulatorSettings

TEST_DATA_ROWS = 20_000
# The dashboard and CLI subprocesses in tests start their own embedded emulator; keep it small.
os.environ.setdefault("SFDUCK_DEMO_ROWS", str(TEST_DATA_ROWS))


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorSettings]:
    emu = Emulator(data_rows=TEST_DATA_ROWS)
    settings = emu.start()
    yield settings
    emu.stop()


def snowflake_settings(emu: EmulatorSettings, **overrides: object) -> SnowflakeSettings:
    return dataclasses.replace(emu.snowflake_settings(), **overrides)


@pytest.fixture
def settings(emulator: EmulatorSettings, tmp_path: Path) -> Settings:
    return Settings(snowflake=snowflake_settings(emulator), duckdb_path=tmp_path / "sfduck.duckdb",
                    data_dir=tmp_path / "data", demo=False, lock_timeout_s=5.0)


@pytest.fixture
def engine(settings: Settings) -> SyncEngine:
    return SyncEngine(settings)


@pytest.fixture
def sf(emulator: EmulatorSettings) -> Iterator[snowflake.connector.SnowflakeConnection]:
    """A plain connector session for changing source data the way another Snowflake user would."""
    conn = snowflake.connector.connect(**emulator.connect_kwargs())
    yield conn
    conn.close()


@pytest.fixture
def source_table(sf: snowflake.connector.SnowflakeConnection, emulator: EmulatorSettings
                 ) -> Callable[[str, str], str]:
    """Create a uniquely named source table from column DDL, so tests never share mutable data."""
    created: list[str] = []

    def make(columns_ddl: str, prefix: str = "T") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8].upper()}"
        sf.cursor().execute(f"CREATE TABLE {quote_ident(emulator.schema)}.{quote_ident(name)} ({columns_ddl})")
        created.append(name)
        return name

    yield make
    for name in created:
        sf.cursor().execute(f"DROP TABLE IF EXISTS {quote_ident(emulator.schema)}.{quote_ident(name)}")


def env_for(emulator: EmulatorSettings, tmp_path: Path) -> dict[str, str]:
    """Environment for a CLI subprocess pointed at the session's emulator and a temp DuckDB file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "SFDUCK_"))}
    env.update(emulator.as_env())
    env.update(SFDUCK_DUCKDB_PATH=str(tmp_path / "sfduck.duckdb"), SFDUCK_DATA_DIR=str(tmp_path / "data"),
               SFDUCK_LOCK_TIMEOUT="5", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return env
