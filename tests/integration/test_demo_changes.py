"""Demo mode's "make ORDERS change" (issue 19 item 8): after a change, an incremental sync with
delete detection moves exactly the changed rows and the copy equals the emulator's table again.

The change runs on a schema of its own, seeded like the demo, so the session's shared emulator
keeps its demo tables for the other tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest

from sfduck_core.demo_changes import DemoChange, change_demo_orders
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SfduckError
from sfduck_emulator import embedded_snowflake
from sfduck_emulator.demo_data import ORDER_ROWS, change_orders, seed
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.test_incremental import local_rows, source_rows


@pytest.fixture
def demo_schema(emulator: EmulatorSettings, sf) -> Iterator[str]:
    schema = f"DEMO_{uuid.uuid4().hex[:8].upper()}"
    sf.cursor().execute(f'CREATE SCHEMA "{schema}"')
    seed(data_rows=10, database=emulator.database, schema=schema)
    yield schema
    sf.cursor().execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_change_is_moved_by_an_incremental_sync_with_delete_detection(engine: SyncEngine, sf, emulator,
                                                                         demo_schema: str) -> None:
    engine.register(demo_schema, "ORDERS", incremental_key="UPDATED_AT", primary_key=["ORDER_ID"],
                    detect_deletes=True)
    first = engine.sync(SyncRequest(demo_schema, "ORDERS", strategy="incremental"))
    assert first["stats"]["rows_inserted"] == ORDER_ROWS
    before = {row[0]: row for row in local_rows(engine, demo_schema, "ORDERS")}

    done = change_orders(25, 40, 15, database=emulator.database, schema=demo_schema, rng=random.Random(7))
    assert done == {"inserted": 25, "updated": 40, "deleted": 15}
    job = engine.sync(SyncRequest(demo_schema, "ORDERS", strategy="incremental"))
    assert job["status"] == "completed"  # LAST_ALTERED moved: not skipped
    stats = job["stats"]
    assert (stats["rows_inserted"], stats["rows_updated"], stats["rows_deleted"]) == (25, 40, 15), stats
    after = local_rows(engine, demo_schema, "ORDERS")
    assert after == source_rows(sf, demo_schema, "ORDERS")  # the copy equals the emulator's table
    assert len(after) == ORDER_ROWS + 25 - 15
    changed = [row for row in after if row[0] in before and row != before[row[0]]]
    assert len(changed) == 40 and all(row[4] > max(r[4] for r in before.values()) for row in changed)

    again = engine.sync(SyncRequest(demo_schema, "ORDERS", strategy="incremental"))
    assert again["status"] == "skipped"  # nothing changed since: the copy is current


def test_changes_are_refused_outside_demo_mode_and_bad_counts_are_explained(engine: SyncEngine) -> None:
    with pytest.raises(SfduckError, match="demo mode only"):
        change_demo_orders(engine.settings, DemoChange())  # the tests' settings are not demo mode
    with pytest.raises(SfduckError, match="Deletes must be a whole number from 0 to 1000"):
        DemoChange(deletes=5000)
    with pytest.raises(SfduckError, match="at least one row"):
        DemoChange(0, 0, 0)
    assert callable(embedded_snowflake.change_orders)  # what demo mode finds through the entry point
