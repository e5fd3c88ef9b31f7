"""Shared fixtures: one emulator per test session, driven by the real connector over HTTP, and a
fresh target per test: a DuckDB file, and (the same tests again) a DuckLake with a SQLite catalog."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
import snowflake.connector

from sfduck_core.config import Settings, SnowflakeSettings, Target, parse_target
from sfduck_core.engine import SyncEngine
from sfduck_core.sqlident import quote_ident
from sfduck_core.storage import lake_setup_sql
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


TARGETS = ("file", "lake")


def lake_env(tmp_path: Path) -> dict[str, str]:
    """SFDUCK_TARGET and SFDUCK_LAKE_DATA_PATH of the test's lake (a SQLite catalog)."""
    return {"SFDUCK_TARGET": f"ducklake:sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}",
            "SFDUCK_LAKE_DATA_PATH": str(tmp_path / "lake" / "data")}


def lake_target(tmp_path: Path) -> Target:
    env = lake_env(tmp_path)
    return parse_target(env["SFDUCK_TARGET"], env["SFDUCK_LAKE_DATA_PATH"], Path)


# The modules whose tests run against a DuckDB file and again against a DuckLake: syncing, merging,
# the command line, crashes and the API. The rest (scheduling, the live server, the emulator, API
# fuzzing...) do not depend on the target and run on the file; test_lake* run on lakes only.
BOTH_TARGETS = {"test_sync.py", "test_incremental.py", "test_cli.py", "test_cancel_and_outages.py", "test_api.py"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target_kind" in metafunc.fixturenames and metafunc.definition.path.name in BOTH_TARGETS:
        metafunc.parametrize("target_kind", TARGETS)


@pytest.fixture
def target_kind() -> str:
    """A DuckDB file, unless the module is one of BOTH_TARGETS (or says otherwise)."""
    return "file"


@pytest.fixture
def settings(emulator: EmulatorSettings, tmp_path: Path, target_kind: str) -> Settings:
    return Settings(snowflake=snowflake_settings(emulator), duckdb_path=tmp_path / "sfduck.duckdb",
                    data_dir=tmp_path / "data", demo=False, lock_timeout_s=5.0,
                    target=lake_target(tmp_path) if target_kind == "lake" else None)


def read_only(where: Settings | dict[str, str]) -> duckdb.DuckDBPyConnection:
    """An analyst's independent read-only connection: the file opened read-only, or a plain
    in-memory DuckDB that attaches the lake READ_ONLY. `where` is the settings or a CLI env."""
    if isinstance(where, Settings):
        target = where.storage
    elif where.get("SFDUCK_TARGET"):
        target = parse_target(where["SFDUCK_TARGET"], where.get("SFDUCK_LAKE_DATA_PATH"), Path)
    else:
        target = Target("duckdb", path=Path(where["SFDUCK_DUCKDB_PATH"]))
    if not target.is_lake:
        return duckdb.connect(str(target.path), read_only=True)
    con = duckdb.connect()
    for sql in lake_setup_sql(target, read_only=True):
        con.execute(sql)
    return con


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


def env_for(emulator: EmulatorSettings, tmp_path: Path, target_kind: str = "file") -> dict[str, str]:
    """Environment for a CLI subprocess pointed at the session's emulator and a temp DuckDB file
    (or, for "lake", the temp lake that the `settings` fixture uses)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "SFDUCK_"))}
    env.update(emulator.as_env())
    env.update(SFDUCK_DUCKDB_PATH=str(tmp_path / "sfduck.duckdb"), SFDUCK_DATA_DIR=str(tmp_path / "data"),
               SFDUCK_LOCK_TIMEOUT="5", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    if target_kind == "lake":
        env.update(lake_env(tmp_path))
    return env
