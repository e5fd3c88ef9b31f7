"""The legacy fixtures are real: the release that made them (this one, until the metadata moves)
syncs their tables onwards from where they were left, an incremental one from its old watermark.
What the upgrade must preserve, proven on the fixture before anything changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sfduck_core.config import Settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.sqlident import qualified
from sfduck_emulator.settings import EmulatorSettings
from tests.fixtures.legacy.copies import expected, legacy_file, legacy_lake
from tests.fixtures.legacy.source import ORDERS, drop_source, source_as_left
from tests.integration.conftest import snowflake_settings

COLUMNS = "ID, NAME, AMOUNT, UPDATED_AT"  # NOTE is excluded by the registration


@pytest.fixture
def legacy_source(sf: Any, emulator: EmulatorSettings) -> Iterator[str]:
    source_as_left(sf, emulator.schema)
    yield emulator.schema
    drop_source(sf, emulator.schema)


@pytest.mark.parametrize("kind", ["file", "lake"])
def test_an_incremental_sync_of_the_fixture_continues_from_its_old_watermark(
        kind: str, tmp_path: Path, emulator: EmulatorSettings, sf: Any, legacy_source: str) -> None:
    schema = legacy_source
    settings = Settings(snowflake=snowflake_settings(emulator), duckdb_path=tmp_path / "sfduck.duckdb",
                        data_dir=tmp_path / "data", demo=False, lock_timeout_s=5.0,
                        target=legacy_lake(tmp_path) if kind == "lake" else None)
    if kind == "file":
        legacy_file(tmp_path)
    old = next(s for s in expected(kind)["table_sync_status"] if s["table_name"] == ORDERS)
    table = qualified(schema, ORDERS)
    sf.cursor().execute(f"UPDATE {table} SET NAME = 'later', UPDATED_AT = '2024-03-01 00:00:00' WHERE ID = 5")
    sf.cursor().execute(f"INSERT INTO {table} VALUES (14, 'newest', 9.99, 'n', '2024-03-01 00:00:01')")

    engine = SyncEngine(settings)
    job = engine.sync(SyncRequest(schema, ORDERS, strategy="incremental"))

    stats = job["stats"]
    assert job["status"] == "completed"
    assert stats["watermark_before"] == old["watermark"]
    assert not stats.get("full_load")
    assert (stats["rows_inserted"], stats["rows_updated"]) == (1, 1)
    assert stats["watermark_after"]["value"] == "2024-03-01 00:00:01"
    with engine.store.connect(read_only=True) as con:
        local = con.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY ID").fetchall()
    source = sf.cursor().execute(f"SELECT {COLUMNS} FROM {table} ORDER BY ID").fetchall()
    assert local == source and len(local) == old["row_count"] + 1
    assert [j["status"] for j in engine.store.history(schema, ORDERS)][:1] == ["completed"]
    assert len(engine.store.history()) == len(expected(kind)["sync_jobs"]) + 1
