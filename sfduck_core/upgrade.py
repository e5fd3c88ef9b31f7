"""The upgrade in place: the first start of this release on a DuckDB file or a lake written by a
release that kept its metadata in the data target (`sfduck_meta`, up to commit 7b69258) copies
that metadata into the metadata database, nothing lost, once.

- One metadata transaction copies everything (registrations with keys and column selections,
  every job with its stats and watermark, table statuses, schedules, the audit log, the data
  source claim) and records the target in `legacy_upgrades`: a crash leaves nothing half-copied.
  On PostgreSQL the transaction first takes an advisory lock, so servers starting at once copy once.
- Then the data target is marked migrated (legacy.mark_migrated, with the redacted URL): pointed
  at another metadata database later, it is not copied again. The old rows stay, so a rollback
  to the old release still finds them.
- A metadata database that already holds rows (another target's, or ones made since) is never
  merged into: the upgrade refuses with a ConfigError and changes nothing, unless its rows are
  exactly the ones to copy (the same target copied before, e.g. a crash before the mark).
- A lake job's snapshot is found by the commit labels the old release wrote (`snapshot_id` in
  its stats, as this release records it). Jobs the old release left pending or running are
  copied as they were; the normal reaping settles them (no commit record: failed, "stopped").

`upgrade_in_place` runs once per process and target (Store's construction, which every front end
passes); when the target was already looked at, that is one metadata query.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sfduck_core.errors import ConfigError, StoreBusyError
from sfduck_core.metadata import MetadataDatabase
from sfduck_core.metadata.legacy import (
    LEGACY_TABLES,
    LegacyMetadata,
    mark_migrated,
    migrated_to,
    read_legacy_metadata,
)
from sfduck_core.metadata.records import iso, now
from sfduck_core.metadata.tables import legacy_upgrades, metadata
from sfduck_core.storage import Storage, open_storage

_done: set[tuple[str, str]] = set()
_done_lock = threading.Lock()
_LOCK_NAME = "sfduck legacy upgrade"
# How long the first look into a target waits for another process holding it: a start is not held
# up for the whole lock timeout (the look is made again by the next start, see Store)
LOOK_WAIT_S = 5.0


def upgrade_in_place(storage: Storage, db: MetadataDatabase) -> str | None:
    """Copy `storage`'s old metadata into `db` if it has some not copied yet (see the module's
    docstring); once per process. Returns the one line saying what was copied, or
    None when there was nothing to do (the caller prints it). Raises ConfigError when `db` holds other rows."""
    key = (storage.key, db.url)
    with _done_lock:
        if key in _done:
            return None
        line = _upgrade(storage, db)
        _done.add(key)
    return line


def _upgrade(storage: Storage, db: MetadataDatabase) -> str | None:
    with db.read() as conn:
        record = _record(conn, storage.key)
    if record is not None and record["marked_at"] is not None:
        return None  # looked at before: the single check of every later start
    if record is None and not storage.exists():
        return None  # a new target has nothing to copy (looking would create it)
    where = db.describe()
    if record is None:
        look = open_storage(storage.target, lock_timeout_s=min(storage.lock_timeout_s, LOOK_WAIT_S),
                            memory_limit=storage.memory_limit)
        with look.connect(read_only=True) as con:
            legacy = read_legacy_metadata(con)
            if legacy is not None and storage.capabilities.snapshots:
                legacy = _with_snapshots(look, con, legacy)
        with db.write() as conn:
            if db.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": _LOCK_NAME})
            record = _record(conn, storage.key)  # another process may have looked meanwhile
            if record is None:
                copied = _copy(conn, legacy, storage, where) if legacy is not None else None
                conn.execute(legacy_upgrades.insert().values(target=storage.key, checked_at=now(), copied=copied,
                                                             marked_at=None if copied else now()))
                if copied is None:
                    return None
            else:  # another process copied it while this one waited: that one marks the target
                return None
    try:
        with storage.connect() as con:  # mark the target (once: a start before may have marked it)
            if migrated_to(con) is None:
                mark_migrated(con, where)
    except duckdb.Error as exc:  # the copy stands; the next start marks it (see _record's marked_at)
        raise StoreBusyError(f"copied, but could not mark it migrated yet: {exc}") from None
    with db.write() as conn:
        conn.execute(legacy_upgrades.update().where(legacy_upgrades.c.target == storage.key).values(marked_at=now()))
        copied = _record(conn, storage.key)["copied"] or {}
    return _summary(storage, where, copied)


def _record(conn: Connection, target: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(legacy_upgrades).where(legacy_upgrades.c.target == target)).mappings().first()
    return dict(row) if row is not None else None


def _with_snapshots(storage: Storage, con: Any, legacy: LegacyMetadata) -> LegacyMetadata:
    """Completed lake jobs name the snapshot their commit made, found by the old release's labels."""
    done = [j["sync_id"] for j in legacy.sync_jobs if j["status"] == "completed"]
    found = storage.sync_snapshots(con, done) if done else {}
    jobs = [{**j, "stats": {**(j["stats"] or {}), "snapshot_id": found[j["sync_id"]]}}
            if j["sync_id"] in found else j for j in legacy.sync_jobs]
    return LegacyMetadata(**{**legacy.__dict__, "sync_jobs": jobs})


def _copy(conn: Connection, legacy: LegacyMetadata, storage: Storage, where: str) -> dict[str, int]:
    """Insert every legacy row in this transaction, or refuse when the database holds other rows
    (identical rows: copied before, nothing to insert)."""
    held = {name: _held_rows(conn, name) for name in LEGACY_TABLES}
    if not any(rows for name, rows in held.items() if name != "data_source"):
        # a claim alone (a start before this one, nothing registered) yields, as claim_source does
        conn.execute(metadata.tables["data_source"].delete())
    elif any(held.values()):
        if all(_canonical(held[name]) == _canonical(rows) for name, rows in legacy.tables().items()):
            return {name: len(rows) for name, rows in legacy.tables().items()}
        raise ConfigError(
            f"The {storage.describe()} holds metadata of an earlier sfduck release (in its schema sfduck_meta) to "
            f"copy into the metadata database {where}, but that database already holds other rows "
            f"({_counted({name: len(rows) for name, rows in held.items()})}): "
            "sfduck does not merge two histories. Point SFDUCK_METADATA_URL at an empty database for this "
            f"{storage.label} (or at the one it was copied to before); nothing was changed.")
    for name, rows in legacy.tables().items():
        if rows:
            conn.execute(metadata.tables[name].insert(), rows)
    return {name: len(rows) for name, rows in legacy.tables().items()}


def _held_rows(conn: Connection, name: str) -> list[dict[str, Any]]:
    table = metadata.tables[name]
    columns = [table.c[c] for c in LEGACY_TABLES[name]]
    return [dict(r) for r in conn.execute(sa.select(*columns)).mappings()]


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as comparable text, whichever database they came from (order does not matter)."""
    return sorted(json.dumps(row, sort_keys=True, default=iso) for row in rows)


def _summary(storage: Storage, where: str, copied: dict[str, int]) -> str:
    return (f"Upgraded the {storage.describe()}: copied its metadata from an earlier release into {where} "
            f"({_counted(copied)}); the old rows were left in place.")


def _counted(counts: dict[str, int]) -> str:
    """"3 registrations, 7 jobs, ..." in the order people look for them."""
    return ", ".join(f"{counts.get(name, 0)} {label}" for name, label in _LABELS.items())


_LABELS = {"allowed_tables": "registrations", "sync_jobs": "jobs", "table_sync_status": "table statuses",
           "schedules": "schedules", "audit_log": "audit entries", "data_source": "data source claims"}
