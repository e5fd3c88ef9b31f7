"""What a job lookup by id costs among N jobs: `python bench/job_lookup.py [--jobs N]`.

Issue 18 item 1 dropped the ART indexes of sync_jobs (a crash could leave them stale) and made
sync ids time-ordered (UUID version 7) instead. Measures Store.get_job (a status poll of a finished
job) and the UPDATE a cancel or a recovery makes, on N jobs created one after another over a year:
random ids with the old indexes, random ids without them, and time-ordered ids without them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sfduck_core.store import META, Store  # noqa: E402


def uuid7_at(millis: int) -> str:
    """new_sync_id() as it would have been at `millis`."""
    rand = random.getrandbits(74)
    return str(uuid.UUID(int=millis << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | rand & ((1 << 62) - 1)))


def seed(db: Path, count: int, time_ordered: bool) -> list[str]:
    """`count` jobs, one every year/count seconds up to now, inserted in that order."""
    Store(db).reap_dead_jobs()  # creates and migrates the file
    now_ms = time.time_ns() // 1_000_000
    created = [now_ms - (count - i) * 31_536_000_000 // count for i in range(count)]
    jobs = pa.table({"sync_id": [uuid7_at(ms) if time_ordered else str(uuid.uuid4()) for ms in created],
                     "created_ms": created})
    with duckdb.connect(str(db)) as con:
        con.register("jobs", jobs)
        con.execute(f"""
            INSERT INTO {META}.sync_jobs (sync_id, table_id, schema_name, table_name, strategy, transport, status,
                created_at, stats)
            SELECT sync_id, 'seed-' || (created_ms % 30), 'S', 'T_' || (created_ms % 30), 'full', 'stage',
                   'completed', epoch_ms(created_ms), '{{}}'
            FROM jobs ORDER BY created_ms""")
    return random.sample(jobs.column("sync_id").to_pylist(), 50)


def measure(db: Path, ids: list[str]) -> tuple[float, float]:
    store = Store(db, keep_warm_s=5.0)  # as the server: the file stays open between requests
    store.get_job(ids[0])
    lookups, updates = [], []
    for sync_id in ids:
        started = time.perf_counter()
        assert store.get_job(sync_id) is not None
        lookups.append(time.perf_counter() - started)
    with store.connect() as con:
        for sync_id in ids[:20]:
            started = time.perf_counter()
            con.execute(f"UPDATE {META}.sync_jobs SET error_message = 'x' WHERE sync_id = ?", [sync_id])
            updates.append(time.perf_counter() - started)
    return statistics.median(lookups) * 1e3, statistics.median(updates) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500_000)
    jobs = parser.parse_args().jobs
    with tempfile.TemporaryDirectory() as tmp:
        for label, time_ordered, index in (("random ids (uuid4), indexes", False, True),
                                           ("random ids (uuid4), no index", False, False),
                                           ("time-ordered ids (uuid7), no index", True, False)):
            db = Path(tmp) / f"{len(label)}-{index}.duckdb"
            ids = seed(db, jobs, time_ordered)
            if index:
                with duckdb.connect(str(db)) as con:
                    con.execute(f"CREATE INDEX sync_jobs_by_id ON {META}.sync_jobs (sync_id)")
                    con.execute(f"CREATE INDEX sync_jobs_by_table ON {META}.sync_jobs (table_id)")
            lookup, update = measure(db, ids)
            print(f"{label:38s} get_job median {lookup:6.2f} ms   UPDATE by id median {update:6.2f} ms", flush=True)


if __name__ == "__main__":
    main()
