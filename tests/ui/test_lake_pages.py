"""The dashboard on a DuckLake target: a table as of an earlier sync, an admin's restore of that
version, the statements that open the lake from an analyst's own DuckDB, and the retention controls."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from sfduck_core.engine import SyncRequest
from sfduck_core.service import Service, shared_service
from sfduck_emulator.settings import DEMO_SCHEMA
from tests.ui.conftest import button, texts
from tests.ui.test_app import assert_clean, logged_in, open_page, select


@pytest.fixture
def lake(ui_env: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    """The demo on a lake with ORDERS synced twice; the service is the one the dashboard uses."""
    monkeypatch.setenv("SFDUCK_TARGET", f"ducklake:sqlite:{ui_env / 'lake' / 'catalog.sqlite'}")
    monkeypatch.setenv("SFDUCK_LAKE_DATA_PATH", str(ui_env / "lake" / "data"))
    service = shared_service()
    service.engine.register(DEMO_SCHEMA, "ORDERS")
    for _ in range(2):
        service.engine.sync(SyncRequest(DEMO_SCHEMA, "ORDERS", force=True))
    return service


def as_of_labels(at) -> list[str]:
    [box] = [s for s in at.selectbox if s.label == "As of"]
    return list(box.options)


def test_an_admin_restores_an_earlier_version_from_the_preview(lake: Service) -> None:
    first, second = reversed(lake.engine.store.history(DEMO_SCHEMA, "ORDERS"))
    at = open_page(logged_in("admin"), "pages/preview.py")
    labels = as_of_labels(at)
    assert labels[0] == "now" and len(labels) == 3 and f"(snapshot {first['stats']['snapshot_id']})" in labels[2]
    assert not [b for b in at.button if b.label == "Restore this version"]  # nothing to restore to "now"
    select(at, "As of", labels[2])
    assert_clean(at)

    button(at, "Restore this version").click()  # not confirmed: nothing happens
    at.run()
    assert "Tick the box" in at.warning[0].value
    assert len(lake.engine.store.history(DEMO_SCHEMA, "ORDERS")) == 2

    [confirm] = [c for c in at.checkbox if c.label.startswith("Restore")]
    confirm.check()
    button(at, "Restore this version").click()
    at.run()
    assert_clean(at)
    assert f"to the version of sync {first['sync_id']}" in at.success[0].value
    restored = lake.engine.store.history(DEMO_SCHEMA, "ORDERS")[0]
    assert (restored["strategy"], restored["trigger"], restored["started_by"]) == ("restore", "dashboard", "admin")
    assert restored["stats"]["restored_from"]["sync_id"] == first["sync_id"] != second["sync_id"]


def test_an_analyst_sees_versions_and_how_to_open_the_lake_but_cannot_restore(lake: Service) -> None:
    at = open_page(logged_in("analyst"), "pages/preview.py")
    select(at, "As of", as_of_labels(at)[2])
    assert_clean(at)
    assert not [b for b in at.button if b.label == "Restore this version"]
    python, sql = (c.value for c in at.code)  # made by sfduck_core.reader, like `sfduck reader`
    assert "READ_ONLY" in sql and "sfduck keeps syncing while you read" in python
    assert "import_extension(" in python and "con.sql(" in python

    # the SQL shown works in an analyst's own DuckDB (extensions loaded from files: no network here)
    reader = duckdb.connect()
    *setup, count = [s for s in re.sub(r"--[^\n]*\n", "", sql).split(";\n") if s.strip()]
    for statement in setup:
        reader.execute(statement)
    assert reader.execute(count).fetchone()[0] > 0


def test_the_admin_expires_old_versions_from_the_connection_page(lake: Service) -> None:
    at = open_page(logged_in("admin"), "pages/connection.py")
    assert "keeps the last 10 version(s) of each table" in texts(at)
    button(at, "Show what would be expired").click()
    at.run()
    assert_clean(at)
    assert "snapshots would be expired" in at.info[0].value
    button(at, "Expire old versions now").click()
    at.run()
    assert_clean(at)
    assert at.success[0].value.startswith("Expired 0 of")  # every version is younger than a week
    assert lake.engine.store.audit_log(1)[0]["action"] == "lake_retention"


def test_as_of_shows_that_versions_numbers_and_says_lake(lake: Service) -> None:
    first, _ = reversed(lake.engine.store.history(DEMO_SCHEMA, "ORDERS"))
    at = open_page(logged_in("analyst"), "pages/preview.py")
    assert [m.label for m in at.metric][0] == "Rows in the lake"
    select(at, "As of", as_of_labels(at)[2])
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows in the lake at that version"] == f"{first['stats']['rows_processed']:,}"
    assert metrics["That sync"] == f"{first['strategy']}, completed"
    assert metrics["Rows in Snowflake at that sync"] == f"{first['stats']['total_rows']:,}"
    assert not [m for m in at.metric if "DuckDB" in m.label]
    assert any(f"sync {first['sync_id'][:8]} left in the lake" in c.value for c in at.caption)
