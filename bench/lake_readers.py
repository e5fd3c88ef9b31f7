"""Lake readers during syncs (issue 21, item 6): `python bench/lake_readers.py [--rows N] [--syncs K]`.

An analyst's plain DuckDB in its own process (the lake attached READ_ONLY exactly as `sfduck reader`
prints it: sfduck_core.reader.plan) counts the lake's "data" table every 50 ms while sfduck, in this
process, syncs into a SQLite-catalog lake from the demo emulator (started in this process, as the
dashboard's demo mode does): K full syncs of "data" (forced), then K incremental syncs of ORDERS
(UPDATED_AT, deletes detected) each after a demo change of ORDERS. Every scenario's window is from
the first sync's start to the last one's end; a read belongs to it when it starts inside. Printed
per scenario: syncs, reads, errors, reads over 200 ms, p50 / p99 / slowest read, and the widest gap between the
starts of two consecutive reads (a read that waits shows there even when it is not itself slow).

`--reader-attach-options "X 1, Y 2"` adds options to the reader's ATTACH (to try a reader-side fix).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READ_INTERVAL_S = 0.05
IDLE_S = 3.0
TABLE = "data"


def role_reader(spec: dict) -> None:
    """The analyst: plain duckdb, the extensions loaded from their files, sfduck's printed ATTACH."""
    import duckdb

    con = duckdb.connect()
    for sql in spec["setup"]:
        con.execute(sql)
    query = spec["query"]
    con.execute(query).fetchone()  # the first query also reads the catalog: not measured
    print("READY", flush=True)
    stop = Path(spec["stop"])
    while not stop.exists():
        started = time.monotonic()
        try:
            line: dict = {"n": con.execute(query).fetchone()[0]}
        except duckdb.Error as exc:
            line = {"error": (str(exc).splitlines() or [type(exc).__name__])[0][:200]}
        line.update(t=started, s=time.monotonic() - started)
        print(json.dumps(line), flush=True)
        time.sleep(READ_INTERVAL_S)


@dataclass
class Scenario:
    name: str
    start: float = 0.0
    end: float = 0.0
    syncs: int = 0
    load: list[str] = field(default_factory=list)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))]


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def reader_setup(target, extra_options: str) -> tuple[list[str], str]:
    from sfduck_core import reader
    from sfduck_core.sqlident import quote_literal
    from sfduck_core.storage import extension_file

    p = reader.plan(target, None, None)
    attach = p.attach
    if extra_options:
        attach = attach[:-1] + f", {extra_options})"
    setup = ["SET autoinstall_known_extensions = false",
             *(f"LOAD {quote_literal(str(extension_file(e)), 'extension path')}" for e in p.extensions), attach]
    return setup, attach


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reader"]:
        role_reader(json.loads(argv[1]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help='rows of the emulator\'s "data" table')
    ap.add_argument("--syncs", type=int, default=5, help="syncs per scenario")
    ap.add_argument("--reader-attach-options", default="", help="extra ATTACH options for the reader")
    ap.add_argument("--raw", help="write every read (JSON lines) to this file")
    args = ap.parse_args(argv)

    from sfduck_core.config import Settings, parse_target
    from sfduck_core.engine import SyncEngine, SyncRequest
    from sfduck_core.sqlident import qualified
    from sfduck_emulator.demo_data import change_orders
    from sfduck_emulator.server import Emulator
    from sfduck_emulator.settings import DEMO_DATABASE
    from tests.integration.conftest import snowflake_settings

    work = Path(tempfile.mkdtemp(prefix="sfduck-lake-readers-"))
    target = parse_target(f"ducklake:sqlite:{work / 'lake' / 'catalog.sqlite'}", str(work / "lake" / "data"), Path)
    print(f"work dir {work}; load {loadavg()}", file=sys.stderr)
    emulator = Emulator(data_rows=args.rows)
    emu = emulator.start()
    engine = SyncEngine(Settings(snowflake=snowflake_settings(emu), duckdb_path=work / "sfduck.duckdb",
                                 data_dir=work / "data", demo=False, lock_timeout_s=60.0, target=target))
    schema = emu.schema
    engine.register(schema, TABLE)
    engine.register(schema, "ORDERS", incremental_key="UPDATED_AT", detect_deletes=True)
    engine.sync(SyncRequest(schema, TABLE))
    engine.sync(SyncRequest(schema, "ORDERS", strategy="incremental"))

    setup, attach = reader_setup(target, args.reader_attach_options)
    stop = work / "stop-reader"
    query = f"SELECT count(*) FROM lake.{qualified(schema, TABLE)}"
    proc = subprocess.Popen([sys.executable, __file__, "reader", json.dumps({"setup": setup, "query": query,
                                                                            "stop": str(stop)})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if first != "READY":
        raise RuntimeError(f"the reader did not start: {first} {proc.stderr.read() if proc.stderr else ''}")
    reads: list[dict] = []
    collector = threading.Thread(target=lambda: reads.extend(json.loads(x) for x in proc.stdout if x.strip()),
                                 daemon=True)
    collector.start()

    scenarios = [Scenario("idle (no sync)"), Scenario(f'full sync of "{TABLE}" ({args.rows:,} rows, forced)'),
                 Scenario("incremental sync of ORDERS (after a demo change)")]
    try:
        idle = scenarios[0]
        idle.start = time.monotonic()
        time.sleep(IDLE_S)
        idle.end = time.monotonic()
        for sc, run in ((scenarios[1], lambda: engine.sync(SyncRequest(schema, TABLE, force=True))),
                        (scenarios[2], lambda: (change_orders(50, 100, 20, database=DEMO_DATABASE, schema=schema),
                                                engine.sync(SyncRequest(schema, "ORDERS", strategy="incremental"))))):
            sc.load.append(loadavg())
            sc.start = time.monotonic()
            for _ in range(args.syncs):
                result = run()
                job = result[1] if isinstance(result, tuple) else result
                if job.get("status") != "completed":
                    raise RuntimeError(f"a sync did not complete: {job.get('status')} {job.get('error')}")
                sc.syncs += 1
            sc.end = time.monotonic()
            sc.load.append(loadavg())
            time.sleep(0.5)
    finally:
        stop.touch()
        proc.wait(timeout=60)
        collector.join(timeout=10)
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)

    if args.raw:
        Path(args.raw).write_text("".join(json.dumps(r) + "\n" for r in reads))
    print(f"reader's ATTACH: `{attach.replace(str(work), '<work>')}`")
    print()
    print("| scenario | syncs | reads | errors | reads over 200 ms | p50 ms | p99 ms | slowest read ms "
          "| widest gap between reads ms | load (1/5/15) start; end |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sc in scenarios:
        mine = [r for r in reads if sc.start <= r["t"] <= sc.end]
        ok = [r["s"] for r in mine]
        errors = [r["error"] for r in mine if "error" in r]
        starts = [r["t"] for r in mine]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        if not ok:
            print(f"| {sc.name} | {sc.syncs} | 0 | - | - | - | - | - | - | |")
            continue
        print(f"| {sc.name} | {sc.syncs} | {len(mine)} | {len(errors)} | {sum(x > 0.2 for x in ok)} | "
              f"{statistics.median(ok) * 1000:.0f} | "
              f"{percentile(ok, 99) * 1000:.0f} | {max(ok) * 1000:.0f} | {max(gaps, default=0) * 1000:.0f} | "
              f"{'; '.join(sc.load) or loadavg()} |")
        if errors:
            print(f"errors: {sorted(set(errors))[:3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
