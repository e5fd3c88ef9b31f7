"""DuckLake vs the DuckDB file (issue 11): `python bench/lake_vs_file.py [--rows N] [--reps R] [--quick]`.

The same sfduck code on its two local targets: a DuckLake with a SQLite catalog and a local data
folder (SFDUCK_TARGET=ducklake:sqlite:<file>, SFDUCK_LAKE_DATA_PATH=<folder>) and the embedded
DuckDB file. Measured ratios, lake / file:
  1. local half of a full sync of N rows (default 5M): stage-shaped Parquet files -> the typed
     table, replacing an existing version in one transaction (the worker's `sfduck_parquet`, as
     run.py measures it);
  2. a 10% upsert into the N-row table (half updates, half new keys): sfduck's loader into a
     staging table, `incremental.upsert`, DROP staging, one COMMIT (the worker's `sfduck_upsert`);
  3. an independent reader (plain duckdb, its own process) polling `SELECT count(*), sum(hash(t))`
     every 50 ms while scenario 1's sync runs: reads made, refused, p50 / p95 / max latency.

Conventions are run.py's (imported from it): every method in its own process, peak RSS from
os.wait4, methods interleaved within each repetition, min and median, load average per scenario.
Data comes from datagen.py, imported in a child process (`gen` role). The `reader` role is the
independent reader of scenario 3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import run  # bench/run.py: the child-process, timing and table conventions
from run import Row, Table, child, interleave, loadavg, log, package_version, publish, run_method

THIS = Path(__file__).resolve()
SCHEMA, TABLE = "BENCH", "fact"  # as worker.py names them
AIM = 1.25  # issue 11: the lake within 1.25x of the file for scenarios 1 and 2
READ_INTERVAL_S = 0.05
IDLE_BEFORE_S = 3.0  # reads before the sync starts: the reader's latency with no writer
VERSIONS = ("duckdb", "duckdb_extension_ducklake", "duckdb_extension_sqlite_scanner", "pyarrow", "numpy")
_LOCK = re.compile(r"lock", re.IGNORECASE)


# --- child roles -------------------------------------------------------------------------------


def role_gen(argv: list[str]) -> None:
    """`gen fact DIR ROWS` | `gen changes DIR BASE_ROWS`: datagen's own generators, printed as JSON."""
    import datagen

    kind, out, rows = argv[0], Path(argv[1]), int(argv[2])
    info = datagen.write_fact(out, rows) if kind == "fact" else datagen.write_change_set(out, rows)
    print(json.dumps(info))


def role_reader(spec: dict) -> None:
    """An analyst's reader: plain duckdb, one thread, no sfduck code but the quoting helpers and
    the offline extension files. Prints READY after its first read, then one JSON line per read
    (start on CLOCK_MONOTONIC, seconds, result or error) until the stop file appears.

    file: `duckdb.connect(path, read_only=True)` per read (a file admits one process, so holding
    it would stop the sync); lake: the lake attached READ_ONLY once, or per read (`reattach`)."""
    import duckdb

    from sfduck_core.sqlident import qualified, quote_literal
    from sfduck_core.storage import extension_file

    lake = spec.get("lake")

    def connect() -> duckdb.DuckDBPyConnection:
        if not lake:
            return duckdb.connect(spec["db"], read_only=True, config={"threads": 1})
        con = duckdb.connect(config={"threads": 1})
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        for name in ("sqlite_scanner", "ducklake"):
            con.execute(f"LOAD {quote_literal(str(extension_file(name)), 'extension path')}")
        con.execute(f"ATTACH {quote_literal('ducklake:sqlite:' + lake['catalog'], 'catalog')} AS lake "
                    f"(DATA_PATH {quote_literal(lake['data_path'], 'data path')}, READ_ONLY)")
        return con

    table = ("lake." if lake else "") + qualified(SCHEMA, TABLE)
    query = f"SELECT count(*), coalesce(sum(hash(t)), 0)::VARCHAR FROM {table} t"
    reopen = not lake or spec.get("reattach", False)
    held = None if reopen else connect()
    if held is not None:
        held.execute(query).fetchone()  # the first query also reads the catalog: not measured
    stop = Path(spec["stop"])
    first = True
    while not stop.exists():
        started = time.monotonic()
        con = held
        try:
            if con is None:
                con = connect()
            count, digest = con.execute(query).fetchone()
            line: dict = {"sig": [int(count), digest]}
        except duckdb.Error as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            line = {"error": text[:200], "refused": bool(_LOCK.search(text))}
        finally:
            if reopen and con is not None:
                con.close()
        line.update(t=started, s=time.monotonic() - started)
        print(json.dumps(line), flush=True)
        if first:
            print("READY", flush=True)
            first = False
        time.sleep(READ_INTERVAL_S)


# --- orchestration -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


@dataclass
class ReaderRow:
    label: str
    during: list[dict] = field(default_factory=list)  # reads overlapping a sync, all repetitions
    before: list[dict] = field(default_factory=list)  # reads before the sync began
    sync_s: list[float] = field(default_factory=list)
    open_s: list[float] = field(default_factory=list)  # the writer's wait to open the target
    reads_per_run: list[int] = field(default_factory=list)
    wrong: int = 0  # successful reads that saw something but a whole version

    def markdown_row(self, alone: Row | None) -> str:
        ok = [r["s"] * 1000 for r in self.during if "sig" in r]
        refused = sum(1 for r in self.during if r.get("refused"))
        other = sum(1 for r in self.during if "error" in r and not r.get("refused"))
        refusal = [r["s"] * 1000 for r in self.during if r.get("refused")]
        idle = [r["s"] * 1000 for r in self.before if "sig" in r]
        fmt = (lambda v: f"{v:,.0f}") if ok else (lambda v: "-")
        slow = (f"{statistics.median(self.sync_s):.2f} s ({statistics.median(self.sync_s) / alone.median:.2f}× "
                "alone)" if alone and alone.runs else f"{statistics.median(self.sync_s):.2f} s")
        refusal_note = f"; refused in {statistics.median(refusal):.0f} ms (median)" if refusal else ""
        return (f"| {self.label} | {len(self.during)} ({', '.join(map(str, self.reads_per_run))}) | "
                f"{len(ok)} | {refused}{refusal_note} | {other} | {fmt(percentile(ok, 50))} | "
                f"{fmt(percentile(ok, 95))} | {fmt(max(ok) if ok else 0)} | "
                f"{percentile(idle, 50):,.0f} / {max(idle) if idle else float('nan'):,.0f} ({len(idle)}) | {slow} | "
                f"{max(self.open_s):.2f} s | {'yes' if not self.wrong else f'NO ({self.wrong} reads)'} |")


class LakeBench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rows = args.rows
        self.reps = args.reps
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="sfduck-lake-bench-", dir="/tmp"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.info: dict[str, dict] = {}
        self.commit = run.Bench.git_head()
        self.live_file = self.work / "runs" / "file" / "db.duckdb"
        live = self.work / "runs" / "lake"
        self.live_lake = {"catalog": str(live / "lake.sqlite"), "data_path": str(live / "data") + "/"}
        self.stash_lake = self.work / "lake_base"  # the prepared lake, moved aside; never attached there
        self.base_file = self.work / "base.duckdb"
        self.s1 = Table(
            "1. Local half of a full sync (stage Parquet -> table, atomic replace)",
            "Stage-shaped ~16 MB snappy Parquet files -> the typed table, replacing an existing version of "
            "the same rows in one transaction: the worker's `sfduck_parquet` (sfduck's `load_parquet_files` "
            "into a staging table, row count check, `Store.replace_table`, COMMIT), through `Store.connect()` "
            "on each target (memory_limit 256MB). Seconds from opening the target to closing it. Ratio: lake "
            "/ file, measured in the same repetitions.", ratio_label="× file")
        self.s2 = Table(
            "2. Incremental upsert of a 10% change set",
            "The change set loaded into a staging table with sfduck's loader, merged with "
            "`sfduck_core.incremental.upsert` (duplicate check, delete-by-key, insert), staging dropped, one "
            "COMMIT: the worker's `sfduck_upsert`, as in the engine's merge (stage_load_s counts from opening the "
            "target). Ratio: lake / file.",
            ratio_label="× file")
        self.s3: list[ReaderRow] = []
        self.s3_load: list[str] = []

    # data and targets

    def gen(self, kind: str, out: Path, rows: int) -> dict:
        t0 = time.perf_counter()
        stdout, _ = child([str(THIS), "gen", kind, str(out), str(rows)])
        info = {**json.loads(stdout), "gen_s": round(time.perf_counter() - t0, 1)}
        log(f"generated {kind} {rows:,}: {info}")
        return info

    def prepare(self) -> None:
        n = self.rows
        self.fact = self.work / f"fact_{n}"
        self.info[f"fact_{n}"] = self.gen("fact", self.fact, n)
        run_method({"method": "prep_sfduck_table", "db": str(self.base_file), "data_dir": str(self.fact)})
        live = Path(self.live_lake["catalog"]).parent
        shutil.rmtree(live, ignore_errors=True)
        prep = run_method({"method": "prep_sfduck_table", "lake": self.live_lake, "data_dir": str(self.fact)})
        os.rename(live, self.stash_lake)  # DuckLake keeps its DATA_PATH: restored to this very place
        log(f"prepared the file ({self.base_file.stat().st_size / 2**20:.0f} MB) and the lake "
            f"({prep.extra.get('file_mb')} MB)")
        if 2 in self.args.scenarios:
            self.changes = self.work / f"changes_{n}"
            self.info[f"changes_{n}"] = self.gen("changes", self.changes, n)

    def file_spec(self, method: str, data: Path) -> dict:
        shutil.rmtree(self.live_file.parent, ignore_errors=True)
        self.live_file.parent.mkdir(parents=True)
        shutil.copyfile(self.base_file, self.live_file)
        return {"method": method, "db": str(self.live_file), "data_dir": str(data)}

    def lake_spec(self, method: str, data: Path) -> dict:
        live = Path(self.live_lake["catalog"]).parent
        shutil.rmtree(live, ignore_errors=True)
        shutil.copytree(self.stash_lake, live)
        return {"method": method, "lake": self.live_lake, "data_dir": str(data)}

    def cleanup(self, spec: dict) -> None:
        shutil.rmtree(Path(spec["lake"]["catalog"]).parent if spec.get("lake") else Path(spec["db"]).parent,
                      ignore_errors=True)

    # scenarios

    def full_sync(self) -> None:
        file = Row("DuckDB file", self.rows)
        lake = Row("**DuckLake** (SQLite catalog, local data folder)", self.rows, ref=file)
        self.s1.rows += [file, lake]
        interleave(self.s1, [(file, lambda r: self.file_spec("sfduck_parquet", self.fact), self.cleanup),
                             (lake, lambda r: self.lake_spec("sfduck_parquet", self.fact), self.cleanup)], self.reps)
        self.phase_notes(self.s1, ("open_s", "load_s", "commit_s"))

    def upsert(self) -> None:
        info = self.info[f"changes_{self.rows}"]
        total = self.rows + info["inserts"]
        file = Row("DuckDB file", total)
        lake = Row("**DuckLake** (SQLite catalog, local data folder)", total, ref=file)
        self.s2.rows += [file, lake]
        interleave(self.s2, [(file, lambda r: self.file_spec("sfduck_upsert", self.changes), self.cleanup),
                             (lake, lambda r: self.lake_spec("sfduck_upsert", self.changes), self.cleanup)], self.reps)
        self.phase_notes(self.s2, ("open_s", "stage_load_s", "merge_s", "commit_close_s"))
        self.s2.intro += (f" Base table {self.rows:,} rows; change set {info['rows']:,} rows ({info['updates']:,} "
                          f"updates + {info['inserts']:,} inserts) in {info['files']} file(s).")

    @staticmethod
    def phase_notes(table: Table, keys: tuple[str, ...]) -> None:
        for r in table.rows:
            parts = [f"{k} {statistics.median(x.extra[k] for x in r.runs):.2f}" for k in keys
                     if all(k in x.extra for x in r.runs)]
            r.note = "median " + ", ".join(parts) + f"; target {r.runs[-1].extra.get('file_mb')} MB"

    def reader_run(self, row: ReaderRow, spec: dict, reader: dict, expected: int) -> None:
        stop = self.work / "reader.stop"
        stop.unlink(missing_ok=True)
        reader = {**reader, "stop": str(stop)}
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen([run.PY, str(THIS), "reader", json.dumps(reader)], stdout=out, stderr=err,
                                    env=run.ENV, cwd=str(run.ROOT))
            try:
                deadline = time.monotonic() + 120
                while True:
                    out.seek(0)
                    if "READY" in out.read():
                        break
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err.seek(0)
                        raise RuntimeError(f"the reader did not start:\n{err.read()[-3000:]}")
                    time.sleep(0.05)
                time.sleep(IDLE_BEFORE_S)
                result = run_method(spec)
                time.sleep(0.3)
            finally:
                stop.touch()
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            lines = [json.loads(ln) for ln in out.read().splitlines() if ln.startswith("{")]
        if result.rows != expected:
            raise RuntimeError(f"{row.label}: expected {expected} rows, got {result.rows}")
        start, end = result.extra["window"]
        during = [x for x in lines if x["t"] < end and x["t"] + x["s"] > start]
        row.during += during
        row.before += [x for x in lines if x["t"] + x["s"] <= start]
        row.reads_per_run.append(len(during))
        row.sync_s.append(result.seconds)
        row.open_s.append(result.extra.get("open_s", 0.0))
        sigs = [tuple(x["sig"]) for x in lines if "sig" in x]
        # the new version holds the same rows as the old one: every whole version reads the same
        row.wrong += sum(1 for s in sigs if s[0] != expected or s != sigs[0])
        ok = [x["s"] for x in during if "sig" in x]
        log(f"3. reader | {row.label}: sync {result.seconds:.2f}s (open {row.open_s[-1]:.2f}s), {len(during)} reads "
            f"during it, {len(during) - len(ok)} failed, max {max(ok, default=0) * 1000:.0f} ms")

    def readers(self) -> None:
        file = ReaderRow("DuckDB file: `duckdb.connect(file, read_only=True)` per read")
        lake = ReaderRow("**DuckLake**: attached READ_ONLY once, one query per read")
        again = ReaderRow("**DuckLake**: attached READ_ONLY per read")
        self.s3 = [file, lake, again]
        methods = [
            (file, lambda: self.file_spec("sfduck_parquet", self.fact), lambda s: {"db": s["db"]}),
            (lake, lambda: self.lake_spec("sfduck_parquet", self.fact), lambda s: {"lake": s["lake"]}),
            (again, lambda: self.lake_spec("sfduck_parquet", self.fact),
             lambda s: {"lake": s["lake"], "reattach": True}),
        ]
        self.s3_load.append(f"start {loadavg()}")
        for _ in range(self.reps):
            for row, make, reader in methods:
                spec = make()
                try:
                    self.reader_run(row, spec, reader(spec), self.rows)
                finally:
                    self.cleanup(spec)
        self.s3_load.append(f"end {loadavg()}")

    # report

    def readers_markdown(self) -> str:
        alone = {"file": self.s1.rows[0] if self.s1.rows else None, "lake": self.s1.rows[1] if self.s1.rows else None}
        lines = [
            "### 3. A reader during a full sync", "",
            f"An independent reader process (plain duckdb, `threads=1`, default priority) polls `SELECT count(*), "
            f"sum(hash(t))` over the {self.rows:,}-row table every {READ_INTERVAL_S * 1000:.0f} ms while scenario "
            "1's sync runs in its own process. A read counts as *during* the sync when it overlaps the sync's "
            "time from opening the target to closing it (both processes read CLOCK_MONOTONIC). Latency = the "
            "read's wall time (opening the file or attaching the lake included where it is per read) of the "
            f"reads that returned rows (nearest rank: with fewer than 20 reads, p95 is the max); *idle* = the reads "
            f"in the {IDLE_BEFORE_S:.0f} s before the sync began. The file cannot "
            "be held by a reader without stopping syncs, so its reader opens it per read; a lake reader can "
            "stay attached. The sync's time to open the target includes, for the file, waiting while the reader "
            "holds it (sfduck retries), for the lake loading the extensions and attaching. Reads, refusals and "
            "latencies pooled over all repetitions.", "",
            "| target / reader | reads during sync (per run) | answered | refused (lock) | other errors | "
            "p50 ms | p95 ms | max ms | idle p50 / max ms (reads) | sync with reader (median) | the sync's time to open "
            "the target (max) | every answer a whole version |",
            "|" + "---|" * 12,
        ]
        for row in self.s3:
            if row.sync_s:
                lines.append(row.markdown_row(alone["file" if row is self.s3[0] else "lake"]))
        lines += ["", "Load average (1/5/15 min) during this scenario: " + "; ".join(self.s3_load)]
        errors = sorted({re.sub(r"\d+", "N", x["error"].replace(str(self.work), "<work>"))
                         for row in self.s3 for x in row.during if "error" in x})
        if errors:
            lines += ["", "Errors seen (numbers as N): " + "; ".join(f"`{e}`" for e in errors[:5])]
        file = self.s3[0] if self.s3 and self.s3[0].open_s else None
        if file and max(file.open_s) > 1.0:
            lines += ["", f"A reader polling the file delays the sync itself: sfduck's writer retries while the reader "
                      f"holds the file and waited up to {max(file.open_s):.1f} s (runs: "
                      f"{', '.join(f'{x:.1f}' for x in file.open_s)} s) before it could open it; past "
                      "SFDUCK_LOCK_TIMEOUT (30 s by default) the sync fails. A lake reader never makes the writer "
                      "wait (its CPU still competes on a small machine: see the sync's time with a reader)."]
        return "\n".join(lines) + "\n"

    def aims(self) -> tuple[str, bool]:
        lines = ["### Aim (issue 11): the lake within 1.25× of the file", "",
                 "| scenario | lake / file (median) | lake / file (min) | informative: without opening the target "
                 "(median) | verdict |", "|---|---|---|---|---|"]
        met = True
        for table, name in ((self.s1, "1. full sync, local half"), (self.s2, "2. 10% upsert")):
            lake = next((r for r in table.rows if r.ref is not None and r.runs), None)
            if lake is None:
                continue
            ratio = lake.median / lake.ref.median
            ok = ratio <= AIM
            met &= ok
            def worked(row: Row) -> float:
                return statistics.median(r.seconds - r.extra.get("open_s", 0.0) for r in row.runs)

            lines.append(f"| {name}, {lake.rows:,} rows | {ratio:.2f}× | {lake.min / lake.ref.min:.2f}× | "
                         f"{worked(lake) / worked(lake.ref):.2f}× | {'met' if ok else 'MISSED'} |")
        return "\n".join(lines) + "\n", met

    def report(self, command: str, started: dt.datetime, elapsed: float) -> str:
        aims, met = self.aims()
        verdict = ("**The aim was met**" if met else "**The aim was NOT met**") + (
            f": the lake's median time is within {AIM}× of the file's in both scenarios." if met else
            f": see the table below (aim {AIM}×, by median).")
        head = [
            "# DuckLake vs DuckDB file (issue 11)", "",
            f"Command: `{command}`  ",
            f"Date: {started:%Y-%m-%d %H:%M} UTC, took {elapsed / 60:.1f} min; {self.reps} repetition(s) per method, "
            "methods interleaved within each repetition, each in its own process.  ",
            f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; shared "
            "with other engineers' test runs, so expect noise (load averages are given per scenario).  ",
            "Versions: " + ", ".join(f"{p} {package_version(p)}" for p in VERSIONS) + f"; sfduck at {self.commit}.  ",
            "Lake: `SFDUCK_TARGET=ducklake:sqlite:<work>/lake.sqlite`, `SFDUCK_LAKE_DATA_PATH=<work>/data/` (both on "
            "the same local disk as the file), opened by sfduck's `Store.connect()` (extensions loaded from their "
            "pip packages, SQLite catalog in WAL mode, sfduck's writer lock).", "",
            verdict, "",
            "Rows/s uses the median. Peak RSS is the largest ru_maxrss of the method's process over its runs. "
            "Timings cover the operation only (opening the target through closing it, so the file's checkpoint "
            "on close counts); process start and imports are excluded. Before every run the target is restored "
            "from a prepared copy holding the table's previous version (page cache warm for both).", "",
            f"Data: {json.dumps(self.info)}", "",
            aims,
        ]
        body = [t.markdown() for t in (self.s1, self.s2) if any(r.runs for r in t.rows)]
        if any(r.sync_s for r in self.s3):
            body.append(self.readers_markdown())
        return "\n".join(head) + "\n" + "\n".join(body)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gen"]:
        role_gen(argv[1:])
        return 0
    if argv[:1] == ["reader"]:
        role_reader(json.loads(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, help="rows of the table (default 5,000,000; 200,000 with --quick)")
    p.add_argument("--reps", type=int, help="repetitions per method (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke check: 200k rows, 1 repetition, no file written")
    p.add_argument("--scenarios", default="1,2,3", help="comma-separated subset of 1,2,3")
    p.add_argument("--work-dir", help="where generated data goes (default: a new /tmp/sfduck-lake-bench-*)")
    p.add_argument("--out", help="markdown file to write (default bench/RESULTS_LAKE.md; none with --quick)")
    p.add_argument("--keep", action="store_true", help="keep generated data")
    args = p.parse_args(argv)
    args.rows = args.rows or (200_000 if args.quick else 5_000_000)
    args.reps = args.reps or (1 if args.quick else 3)
    args.scenarios = {int(s) for s in args.scenarios.split(",") if s.strip()}
    out = args.out or (None if args.quick else str(run.BENCH / "RESULTS_LAKE.md"))
    command = "python bench/lake_vs_file.py " + " ".join(argv)
    started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()

    bench = LakeBench(args)
    log(f"work dir {bench.work}")
    try:
        bench.prepare()
        if 1 in args.scenarios:
            bench.full_sync()
        if 2 in args.scenarios:
            bench.upsert()
        if 3 in args.scenarios:
            bench.readers()
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    text = bench.report(command.strip(), started, time.perf_counter() - t0)
    return publish(text, out)


if __name__ == "__main__":
    raise SystemExit(main())
