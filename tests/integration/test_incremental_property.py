"""Incremental syncs stay exact under any history of source changes (issue 9, item 14).

A hypothesis state machine changes a fresh source table in the emulator at random - inserts,
updates that move the watermark column forward, deletes, rows tying the watermark, NULL watermark
values, late commits stamped below the last synced maximum, added columns (with or without a
DEFAULT, which Snowflake sets in existing rows) - and interleaves incremental syncs of the table,
registered with a primary key and delete detection (the configuration that promises an exact
copy). After every sync the local DuckDB table must equal `SELECT *` of the source, row by row and
column by column. The source table is the model: the machine only remembers what it needs to
choose its next step.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import snowflake.connector
from hypothesis import HealthCheck, seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sfduck_core.config import Settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.sqlident import qualified, quote_ident
from sfduck_emulator.settings import EmulatorSettings

BASE = dt.datetime(2024, 1, 1)
NAMES = st.text(alphabet="abcxyz", max_size=3)
EXTRA_TYPES = {"VARCHAR": NAMES, "NUMBER(10,0)": st.integers(-1000, 1000)}


def stamp(tick: int) -> dt.datetime:
    """Watermark values: strictly increasing in `tick`, with a fraction of a second to keep exact."""
    return BASE + dt.timedelta(seconds=tick, microseconds=(tick * 137_911) % 1_000_000)


class IncrementalHistory(RuleBasedStateMachine):
    """One example = one new source table, its registration, and a random history of changes."""

    def __init__(self, emulator: EmulatorSettings, sf: snowflake.connector.SnowflakeConnection,
                 engine: SyncEngine) -> None:
        super().__init__()
        self.emulator, self.sf, self.engine = emulator, sf, engine
        self.schema = emulator.schema
        self.table = f"PROP_{uuid.uuid4().hex[:10].upper()}"
        self.ids: set[int] = set()  # live at the source
        self.gone: set[int] = set()  # deleted at the source, may come back as a late commit
        self.next_id = 1
        self.clock = 0  # the highest tick stamped so far
        self.synced_max: int | None = None  # the highest tick the last sync could see
        self.extras: dict[str, str] = {}  # columns added at the source: name -> type
        self.just_synced = False

    # --- steps, replayable by plain tests ---------------------------------------------------

    @property
    def target(self) -> str:
        return qualified(self.schema, self.table)

    def sql(self, text: str, params: tuple = ()) -> None:
        self.sf.cursor().execute(text, params)
        self.just_synced = False

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def create(self, rows: int, null_first: bool) -> None:
        self.sql(f"CREATE TABLE {self.target} (ID NUMBER(38,0) PRIMARY KEY, NAME VARCHAR, "
                 "UPDATED_AT TIMESTAMP_NTZ(6))")
        for i in range(rows):
            self.insert(self.new_id(), f"seed {i}", None if null_first and i == 0 else self.tick())
        self.engine.register(self.schema, self.table, incremental_key="UPDATED_AT", primary_key=["ID"],
                             detect_deletes=True)

    def insert(self, row_id: int, name: str, tick: int | None, extras: dict[str, Any] | None = None) -> None:
        """Insert a row stamped `tick` (None: a NULL watermark value)."""
        extras = extras or {}
        cols = ["ID", "NAME", "UPDATED_AT", *extras]
        self.sql(f"INSERT INTO {self.target} ({', '.join(map(quote_ident, cols))}) "
                 f"VALUES ({', '.join(['%s'] * len(cols))})",
                 (row_id, name, None if tick is None else stamp(tick), *extras.values()))
        self.ids.add(row_id)
        self.gone.discard(row_id)

    def update(self, row_id: int, name: str, tick: int | None, extras: dict[str, Any] | None = None) -> None:
        extras = extras or {}
        sets = ", ".join(f"{quote_ident(c)} = %s" for c in ["NAME", "UPDATED_AT", *extras])
        self.sql(f"UPDATE {self.target} SET {sets} WHERE ID = %s",
                 (name, None if tick is None else stamp(tick), *extras.values(), row_id))

    def delete(self, row_id: int) -> None:
        self.sql(f"DELETE FROM {self.target} WHERE ID = %s", (row_id,))
        self.ids.discard(row_id)
        self.gone.add(row_id)

    def add(self, kind: str, default: Any = None) -> None:
        """ALTER TABLE ADD COLUMN; with a DEFAULT, Snowflake (and the emulator) fill existing rows."""
        name = f"EXTRA_{len(self.extras) + 1}"
        clause = "" if default is None else f" DEFAULT {default!r}"
        self.sql(f"ALTER TABLE {self.target} ADD COLUMN {quote_ident(name)} {kind}{clause}")
        self.extras[name] = kind

    def run_sync(self, transport: str = "arrow", force: bool = False) -> dict[str, Any]:
        job = self.engine.sync(SyncRequest(self.schema, self.table, strategy="incremental", transport=transport,
                                           force=force))
        assert job["status"] == "completed", job
        self.synced_max = self.clock
        self.just_synced = True
        return job

    def check(self) -> None:
        """The local table equals `SELECT *` of the source: same columns, same rows by primary key."""
        cur = self.sf.cursor()
        source = cur.execute(f"SELECT * FROM {self.target}").fetchall()
        columns = [d[0] for d in cur.description]
        with self.engine.store.connect() as con:
            local_columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [self.schema, self.table]).fetchall()]
            local = con.execute(f"SELECT {', '.join(map(quote_ident, columns))} FROM {self.target}").fetchall()
        assert sorted(local_columns) == sorted(columns)
        local_by_key = {row[0]: row for row in local}
        assert len(local_by_key) == len(local), "duplicate keys in the local table"
        assert local_by_key == {row[0]: row for row in source}

    # --- the rules: draw a step ------------------------------------------------------------

    def draw_extras(self, data: st.DataObject) -> dict[str, Any]:
        return {name: data.draw(st.none() | EXTRA_TYPES[kind], label=name) for name, kind in self.extras.items()}

    def draw_live_id(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(sorted(self.ids)), label="id")

    @initialize(rows=st.integers(0, 3), null_first=st.booleans())
    def create_and_register(self, rows: int, null_first: bool) -> None:
        self.create(rows, null_first)

    @rule(data=st.data(), count=st.integers(1, 3))
    def insert_new_rows(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.insert(self.new_id(), data.draw(NAMES, label="name"), self.tick(), self.draw_extras(data))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def update_moves_watermark_forward(self, data: st.DataObject) -> None:
        self.update(self.draw_live_id(data), data.draw(NAMES, label="name"), self.tick(), self.draw_extras(data))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def delete_row(self, data: st.DataObject) -> None:
        self.delete(self.draw_live_id(data))

    @precondition(lambda self: self.synced_max is not None)
    @rule(data=st.data())
    def insert_tying_the_watermark(self, data: st.DataObject) -> None:
        """Committed after the sync, stamped with exactly the synced maximum."""
        self.insert(self.new_id(), data.draw(NAMES, label="name"), self.synced_max, self.draw_extras(data))

    @precondition(lambda self: self.synced_max is not None and self.ids)
    @rule(data=st.data())
    def update_tying_the_watermark(self, data: st.DataObject) -> None:
        self.update(self.draw_live_id(data), data.draw(NAMES, label="name"), self.synced_max,
                    self.draw_extras(data))

    @rule(data=st.data())
    def insert_with_null_watermark(self, data: st.DataObject) -> None:
        self.insert(self.new_id(), data.draw(NAMES, label="name"), None, self.draw_extras(data))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def update_to_null_watermark(self, data: st.DataObject) -> None:
        self.update(self.draw_live_id(data), data.draw(NAMES, label="name"), None, self.draw_extras(data))

    @precondition(lambda self: self.synced_max)
    @rule(data=st.data())
    def late_commit_below_the_watermark(self, data: st.DataObject) -> None:
        """A long transaction commits after the sync a row stamped before the synced maximum; it may
        bring back a key deleted earlier."""
        tick = data.draw(st.integers(0, self.synced_max - 1), label="tick")
        reuse = sorted(self.gone)
        row_id = data.draw(st.sampled_from(reuse), label="id") if reuse and data.draw(st.booleans()) else self.new_id()
        self.insert(row_id, data.draw(NAMES, label="name"), tick, self.draw_extras(data))

    @precondition(lambda self: len(self.extras) < 3)
    @rule(data=st.data(), kind=st.sampled_from(sorted(EXTRA_TYPES)))
    def add_column(self, data: st.DataObject, kind: str) -> None:
        self.add(kind, data.draw(st.none() | EXTRA_TYPES[kind], label="default"))

    @rule(transport=st.sampled_from(["stage", "arrow"]), force=st.booleans())
    def sync(self, transport: str, force: bool) -> None:
        self.run_sync(transport, force)

    @precondition(lambda self: self.just_synced)
    @invariant()
    def local_table_equals_the_source(self) -> None:
        self.check()

    def teardown(self) -> None:
        self.sql(f"DROP TABLE IF EXISTS {self.target}")


# Bounded for CI: every step talks to the emulator over HTTP, a sync takes ~0.1-0.3 s; these
# settings run in 15-20 s on the 2-core machine. The seed is the one the property first found
# failures with (the regressions below replay them); SFDUCK_PROPERTY_SEED, SFDUCK_PROPERTY_EXAMPLES
# and SFDUCK_PROPERTY_STEPS explore further. Shrinking stays on: a failure then costs minutes, but
# prints a short sequence worth replaying.
PROPERTY_SEED = 0
PROPERTY_SETTINGS = hypothesis.settings(
    max_examples=int(os.environ.get("SFDUCK_PROPERTY_EXAMPLES", "20")),
    stateful_step_count=int(os.environ.get("SFDUCK_PROPERTY_STEPS", "25")),
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_incremental_sync_is_exact_under_any_history(emulator: EmulatorSettings, sf, settings: Settings) -> None:
    engine = SyncEngine(settings)
    factory = seed(int(os.environ.get("SFDUCK_PROPERTY_SEED", PROPERTY_SEED)))(
        lambda: IncrementalHistory(emulator, sf, engine))
    run_state_machine_as_test(factory, settings=PROPERTY_SETTINGS)


# --- failures the property found, replayed step by step (shrunk by hand to what matters) ----------

@pytest.fixture
def history(emulator: EmulatorSettings, sf, settings: Settings) -> Iterator[IncrementalHistory]:
    machine = IncrementalHistory(emulator, sf, SyncEngine(settings))
    yield machine
    machine.teardown()


@pytest.mark.parametrize("transport", ["stage", "arrow"])
def test_row_inserted_with_a_null_watermark_after_a_sync_arrives(history: IncrementalHistory,
                                                                 transport: str) -> None:
    history.create(rows=3, null_first=False)
    history.run_sync(transport)
    history.insert(history.new_id(), "", None)
    job = history.run_sync(transport)
    assert job["stats"]["null_key_rows"] == 1 and job["stats"]["rows_inserted"] == 1
    history.check()


def test_row_updated_to_a_null_watermark_is_updated_and_unchanged_nulls_are_not_counted(
        history: IncrementalHistory) -> None:
    history.create(rows=3, null_first=True)
    history.run_sync()
    history.update(2, "changed", None)
    job = history.run_sync()
    assert (job["stats"]["rows_updated"], job["stats"]["rows_unchanged"]) == (1, 2)  # rows 1 and 3 as they were
    history.check()


def test_late_commits_below_the_watermark_arrive_with_delete_detection(history: IncrementalHistory) -> None:
    history.create(rows=3, null_first=True)
    history.delete(2)
    history.run_sync()
    history.insert(history.new_id(), "late", 1)  # stamped before the synced maximum (tick 2)
    history.insert(2, "back", 0)  # a deleted key comes back, stamped even earlier
    history.delete(3)
    job = history.run_sync(force=True)
    assert job["stats"]["late_rows"] == 2
    assert (job["stats"]["rows_inserted"], job["stats"]["rows_deleted"]) == (2, 1)
    history.check()


@pytest.mark.parametrize("transport", ["stage", "arrow"])
def test_a_column_added_with_a_default_is_filled_in_existing_rows(history: IncrementalHistory,
                                                                  transport: str) -> None:
    history.create(rows=3, null_first=True)
    history.run_sync(transport)
    history.insert(history.new_id(), "a", history.tick())
    history.add("NUMBER(10,0)", 155)
    history.add("VARCHAR")  # no default: NULL in existing rows, nothing to fill but harmless
    job = history.run_sync(transport)
    assert job["stats"]["schema_drift"]["columns_added"] == ["EXTRA_1", "EXTRA_2"]
    assert job["stats"]["schema_drift"]["rows_backfilled"] == 3
    history.check()
