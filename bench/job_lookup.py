"""The metadata database at scale: `python bench/job_lookup.py [--jobs N] [--tables T] [--clients C]
[--backend sqlite|postgresql|both]`.

Issue 21 item 7: with 1,000 registered tables and 500,000 jobs (over a year, as schedules leave
them; seeded by tests/history_seed.py) in the metadata database, on SQLite (the default file) and
on PostgreSQL (a throwaway cluster, tests/integration/pg_cluster.py), C client threads each ask
in turn for what the API and the dashboard ask most: a page of jobs (newest first, with the total),
a page of one table's jobs, a job by id (a status poll) and a table's status; plus the board.
Prints p50 / p95 / max per request kind (aim: p95 <= 200 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sfduck_core.metadata import JobQuery  # noqa: E402
from sfduck_core.store import Store  # noqa: E402
from tests.history_seed import SEED_SCHEMA, seed_history  # noqa: E402


@contextlib.contextmanager
def metadata_url(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'sfduck-metadata.sqlite'}"
        return
    from tests.integration.pg_cluster import postgres_cluster

    with postgres_cluster() as dsn:
        if dsn is None:
            raise SystemExit("PostgreSQL is not installed here (apt-get install postgresql)")
        parts = dict(item.split("=", 1) for item in dsn.split())
        yield f"postgresql+psycopg://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"


def run(backend: str, jobs: int, tables: int, clients: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, metadata_url(backend, Path(tmp)) as url:
        started = time.perf_counter()
        names = seed_history(Path(tmp) / "sfduck.duckdb", jobs, days=365, tables=tables, metadata_url=url)
        store = Store(Path(tmp) / "sfduck.duckdb", metadata_url=url)
        # what autovacuum (PostgreSQL) and `PRAGMA optimize` (SQLite) would have done after a bulk
        # load of half a million rows: statistics, and PostgreSQL's visibility map (index-only scans)
        with store.metadata.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE")
        print(f"{backend}: seeded {tables:,} tables and {jobs:,} jobs in {time.perf_counter() - started:.0f} s",
              flush=True)
        ids = [j["sync_id"] for j in store.find_jobs(JobQuery(), limit=200, offset=jobs // 2)[0]]
        regs = {r.table_name: r for r in store.list_registrations()}
        kinds: dict[str, Callable[[random.Random], object]] = {
            "page of 50 jobs + total": lambda r: store.find_jobs(JobQuery(), 50, r.randrange(0, 500)),
            "page of a table's jobs + total": lambda r: store.find_jobs(
                JobQuery(table_id=regs[r.choice(names)].table_id), 50),
            "job by id (status poll)": lambda r: store.get_job(r.choice(ids)),
            "table status": lambda r: store.sync_status(SEED_SCHEMA, r.choice(names)),
            "page of failed jobs + total": lambda r: store.find_jobs(JobQuery(status="failed"), 50),
            "board (every table)": lambda r: store.metadata.reports.board(),
        }
        for kind, call in kinds.items():
            call(random.Random(0))  # warm
            times: list[float] = []
            lock = threading.Lock()

            def client(seed: int, call: Callable[[random.Random], object] = call, times: list[float] = times,
                       lock: threading.Lock = lock) -> None:
                rng = random.Random(seed)
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    call(rng)
                    with lock:
                        times.append(time.perf_counter() - t0)

            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ms = sorted(t * 1e3 for t in times)
            p95 = ms[int(len(ms) * 0.95) - 1]
            print(f"  {kind:32s} p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms"
                  f"   ({len(ms)} requests, {clients} clients)", flush=True)
        store.metadata.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500_000)
    parser.add_argument("--tables", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        run(backend, args.jobs, args.tables, args.clients, args.rounds)


if __name__ == "__main__":
    main()
