"""sfduck benchmarks: `python bench/run.py [--rows N] [--quick]`.

Scenarios (see issue 5):
  1. local half of a full sync: stage-shaped Parquet files -> DuckDB table, atomically replacing an
     existing version; sfduck vs the physical reference (CTAS from read_parquet), dlt, pandas;
  2. Arrow transport: connector-shaped result chunks -> DuckDB table, vs the same reference;
  3. incremental upsert of a 10% change set (half updates, half new keys) into an N-row table;
  4. end to end through the emulator (stage and arrow transports), split into phases.

Every method runs in its own process (peak RSS = that process's ru_maxrss from os.wait4); the
methods of a scenario run interleaved, once per repetition, so machine noise hits all of them.
This process only orchestrates (stdlib only, small RSS) and never holds data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
WORKER = BENCH / "worker.py"
DATAGEN = BENCH / "datagen.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RUNTIME__DLTHUB_TELEMETRY": "false"}
CHILD_TIMEOUT_S = 1800


# --- child processes ---------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rows: int
    rss_mb: float
    extra: dict


def child(args: list[str], timeout: float = CHILD_TIMEOUT_S) -> tuple[str, float]:
    """Run a Python child; returns (stdout, peak RSS in MB of that child) or raises with its stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([PY, *args], stdout=out, stderr=err, env=ENV, cwd=str(ROOT))
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed ({proc.returncode}):\n{stderr[-4000:]}")
    return stdout, usage.ru_maxrss / 1024  # Linux: KiB


def run_method(spec: dict) -> Run:
    stdout, rss = child([str(WORKER), json.dumps(spec)])
    line = next(ln for ln in stdout.splitlines() if ln.startswith("BENCH_RESULT "))
    res = json.loads(line.removeprefix("BENCH_RESULT "))
    return Run(res["seconds"], res["rows"], rss, res.get("extra", {}))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    rows: int
    runs: list[Run] = field(default_factory=list)
    ref: Row | None = None  # what the ratio is relative to
    note: str = ""

    @property
    def times(self) -> list[float]:
        return [r.seconds for r in self.runs]

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def rss(self) -> float:
        return max(r.rss_mb for r in self.runs)


@dataclass
class Table:
    title: str
    intro: str
    rows: list[Row] = field(default_factory=list)
    loadavg: list[str] = field(default_factory=list)
    ratio_label: str = "× ref"

    def markdown(self) -> str:
        head = (f"| method | rows | min s | median s | rows/s (median) | {self.ratio_label} (min) | "
                f"{self.ratio_label} (median) | peak RSS MB | runs (s) | notes |")
        lines = [f"### {self.title}", "", self.intro, "", head, "|" + "---|" * 10]
        for r in self.rows:
            if not r.runs:
                continue
            ratio_min = f"{r.min / r.ref.min:.2f}" if r.ref and r.ref.runs else "-"
            ratio_med = f"{r.median / r.ref.median:.2f}" if r.ref and r.ref.runs else "-"
            runs = ", ".join(f"{t:.2f}" for t in r.times)
            lines.append(f"| {r.method} | {r.rows:,} | {r.min:.2f} | {r.median:.2f} | "
                         f"{r.rows / r.median:,.0f} | {ratio_min} | {ratio_med} | {r.rss:,.0f} | {runs} | {r.note} |")
        if self.loadavg:
            lines += ["", "Load average (1/5/15 min) during this scenario: " + "; ".join(self.loadavg)]
        return "\n".join(lines) + "\n"


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def interleave(table: Table, methods: list[tuple[Row, Callable[[int], dict], Callable[[dict], None] | None]],
               reps: int) -> None:
    """Run every method once per repetition, in turn; `make(rep)` prepares and returns the spec."""
    table.loadavg.append(f"start {loadavg()}")
    for rep in range(reps):
        for row, make, after in methods:
            spec = make(rep)
            try:
                run = run_method(spec)
            finally:
                if after:
                    after(spec)
            if run.rows != row.rows:
                raise RuntimeError(f"{row.method}: expected {row.rows} rows, got {run.rows}")
            row.runs.append(run)
            log(f"{table.title} | {row.method} rep {rep + 1}/{reps}: {run.seconds:.2f}s, "
                f"peak RSS {run.rss_mb:.0f} MB {run.extra or ''}")
    table.loadavg.append(f"end {loadavg()}")


# --- scenarios -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="sfduck-bench-", dir="/tmp"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.reps = args.reps
        self.s1 = Table("1. Local half of a full sync (stage Parquet -> DuckDB, atomic replace)",
                        "Stage-shaped ~16 MB snappy Parquet files (C0..C8, epoch-µs timestamps) -> the typed DuckDB "
                        "table, replacing an existing version in one transaction. Ratio: to the physical reference "
                        "(`CREATE TABLE t AS SELECT * FROM read_parquet('dir/*.parquet')`, fresh file, default "
                        "memory_limit) measured in the same repetitions at the same row count.")
        self.s2 = Table("2. Arrow transport (connector-shaped chunks -> DuckDB, atomic replace)",
                        "Result chunks as `fetch_arrow_batches()` yields them (pyarrow.Table per chunk, sizes cycling "
                        "32,768/100,000/131,072/250,000 rows, LZ4 IPC decoded on demand, no read-ahead), loaded "
                        "with sfduck's `spool_arrow_batches` + `load_arrow_spool` (as of the commit in the header) inside sfduck's atomic "
                        "full-sync transaction. Ratio: to the physical reference on the Parquet files of the same rows.")
        self.s3 = Table("3. Incremental upsert of a 10% change set",
                        "Change set = 10% of the base table (half updates of existing keys, half new keys) as stage "
                        "Parquet. Every DuckDB method loads it into a staging table with sfduck's loader, merges, "
                        "drops the staging table and commits in ONE transaction (memory_limit 256MB, no index); "
                        "dlt merges the same rows (primary_key id, delete-insert through its staging dataset). "
                        "Ratio: to the fastest plain-DuckDB method (by median).",
                        ratio_label="× fastest DuckDB")
        self.s4 = Table("4. End to end through the emulator",
                        "`SyncEngine.sync(SyncRequest(schema, 'data', transport=...))` against "
                        "`python -m sfduck_emulator` running in its own process (fakesnow server; its CPU "
                        "competes with the sync on the same 2 cores). Seconds = the sync call; phases from "
                        "job['stats']. Ratio: to the stage transport.", ratio_label="× stage")
        self.info: dict[str, dict] = {}
        self.commit = self.git_head()
        self.baseline_rss: dict[str, float] = {}

    @staticmethod
    def git_head() -> str:
        """The sfduck_core code being measured (others edit it while benchmarks run)."""
        try:
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                  text=True, check=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "sfduck_core"], cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout.strip()
            return f"commit {head}" + (" + uncommitted sfduck_core changes" if dirty else "")
        except (OSError, subprocess.CalledProcessError):
            return "unknown commit"

    # data

    def gen_fact(self, rows: int) -> tuple[Path, Path]:
        data, arrow = self.work / f"fact_{rows}", self.work / f"fact_{rows}.arrows"
        t0 = time.perf_counter()
        out, _ = child([str(DATAGEN), "fact", str(data), str(rows), str(arrow)])
        self.info[f"fact_{rows}"] = {**json.loads(out), "gen_s": round(time.perf_counter() - t0, 1)}
        log(f"generated {rows:,} rows: {self.info[f'fact_{rows}']}")
        return data, arrow

    def prep_base(self, rows: int, data: Path) -> Path:
        base = self.work / f"base_{rows}.duckdb"
        run_method({"method": "prep_sfduck_table", "db": str(base), "data_dir": str(data)})
        return base

    def prep_dlt(self, rows: int, data: Path, disposition: str) -> Path:
        d = self.work / f"dlt_{disposition}_{rows}"
        run_method({"method": "prep_dlt", "disposition": disposition, "db": str(d / "db.duckdb"),
                    "dlt_dir": str(d / "pipelines"), "data_dir": str(data)})
        return d

    # helpers building per-repetition specs

    def fresh(self, name: str) -> str:
        path = self.work / "runs" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return str(path)

    def copy_db(self, base: Path, name: str) -> str:
        d = self.fresh(name)
        shutil.copyfile(base, f"{d}/db.duckdb")
        return f"{d}/db.duckdb"

    def copy_dlt(self, prepared: Path, name: str) -> dict:
        d = self.fresh(name)
        shutil.copytree(prepared, f"{d}/dlt")
        return {"db": f"{d}/dlt/db.duckdb", "dlt_dir": f"{d}/dlt/pipelines"}

    def cleanup(self, spec: dict) -> None:
        for key in ("db", "work_dir"):
            if key in spec:
                p = Path(spec[key])
                shutil.rmtree(p.parent if key == "db" else p, ignore_errors=True)

    # scenarios 1 + 2 at one size

    def full_sync(self, rows: int, data: Path, base: Path) -> None:
        d = str(data)
        small = rows <= self.args.compare_max_rows
        ref1 = Row("reference: CTAS read_parquet (default memory_limit)", rows)
        rows1 = [
            (ref1, lambda r: {"method": "reference", "db": f"{self.fresh('ref')}/db.duckdb", "data_dir": d},
             self.cleanup),
            (Row("reference, memory_limit=256MB", rows, ref=ref1),
             lambda r: {"method": "reference", "db": f"{self.fresh('ref256')}/db.duckdb", "data_dir": d,
                        "memory_limit": "256MB"}, self.cleanup),
            (Row("**sfduck** load_parquet_files (Store default 256MB)", rows, ref=ref1),
             lambda r: {"method": "sfduck_parquet", "db": self.copy_db(base, "sfduck"), "data_dir": d}, self.cleanup),
        ]
        if small:
            dlt_dir = self.prep_dlt(rows, data, "replace")
            rows1 += [
                (Row("dlt replace (insert-from-staging)", rows, ref=ref1),
                 lambda r: {"method": "dlt_replace", **self.copy_dlt(dlt_dir, "dlt"), "data_dir": d}, self.cleanup),
                (Row("pandas: Arrow -> to_pandas() -> CREATE OR REPLACE", rows, ref=ref1),
                 lambda r: {"method": "pandas_path", "db": self.copy_db(base, "pandas"), "data_dir": d},
                 self.cleanup),
            ]
        self.s1.rows += [r for r, _, _ in rows1]
        interleave(self.s1, rows1, self.reps)
        if small:
            shutil.rmtree(dlt_dir, ignore_errors=True)

    def arrow_transport(self, rows: int, data: Path, arrow: Path, base: Path) -> None:
        d = str(data)
        ref2 = Row("reference: CTAS read_parquet (default memory_limit)", rows)
        rows2 = [
            (ref2, lambda r: {"method": "reference", "db": f"{self.fresh('ref')}/db.duckdb", "data_dir": d},
             self.cleanup),
            (Row("**sfduck** spool + load (Store default 256MB)", rows, ref=ref2),
             lambda r: {"method": "sfduck_arrow", "db": self.copy_db(base, "sfarrow"), "arrow_file": str(arrow)},
             self.cleanup),
            (Row("alternative: one INSERT from a RecordBatchReader (256MB)", rows, ref=ref2),
             lambda r: {"method": "arrow_stream_insert", "db": self.copy_db(base, "stream"),
                        "arrow_file": str(arrow)}, self.cleanup),
        ]
        self.s2.rows += [r for r, _, _ in rows2]
        interleave(self.s2, rows2, self.reps)

    # scenario 3

    def upsert(self, rows: int, data: Path, base: Path) -> None:
        changes = self.work / f"changes_{rows}"
        out, _ = child([str(DATAGEN), "changes", str(changes), str(rows)])
        info = json.loads(out)
        self.info[f"changes_{rows}"] = info
        dlt_dir = self.prep_dlt(rows, data, "merge")
        total = rows + info["inserts"]
        c = str(changes)
        fastest = Row("fastest plain DuckDB", total)  # filled in after the runs
        rows3 = [
            (Row("**sfduck** incremental.upsert (dup check + change count + delete-by-key + insert)", total,
                 ref=fastest),
             lambda r: {"method": "sfduck_upsert", "db": self.copy_db(base, "up_sf"), "data_dir": c}, self.cleanup),
            (Row("DuckDB DELETE USING + INSERT, one transaction", total, ref=fastest),
             lambda r: {"method": "duckdb_delete_insert", "db": self.copy_db(base, "up_di"), "data_dir": c},
             self.cleanup),
            (Row("DuckDB MERGE INTO (UPDATE SET * / INSERT *)", total, ref=fastest),
             lambda r: {"method": "duckdb_merge_into", "db": self.copy_db(base, "up_mg"), "data_dir": c},
             self.cleanup),
        ]
        if rows <= self.args.compare_max_rows:
            rows3.append((Row("dlt merge (primary_key id, delete-insert)", total, ref=fastest),
                          lambda r: {"method": "dlt_merge", **self.copy_dlt(dlt_dir, "up_dlt"), "data_dir": c},
                          self.cleanup))
        self.s3.rows += [r for r, _, _ in rows3]
        interleave(self.s3, rows3, self.reps)
        duck = [r for r, _, _ in rows3[1:3]]
        best = min(duck, key=lambda r: r.median)
        fastest.runs = best.runs
        for r, _, _ in rows3:
            r.note = r.note or ""
            if r.runs and r.runs[0].extra.get("merge_s") is not None:
                merge = statistics.median(x.extra["merge_s"] for x in r.runs)
                load = statistics.median(x.extra["stage_load_s"] for x in r.runs)
                r.note = f"staging load {load:.2f}s + merge {merge:.2f}s; file {r.runs[-1].extra.get('file_mb')} MB"
        best.note += f" ← fastest ({best.method.split(',')[0]})"
        self.s3.intro += (f" Base table {rows:,} rows; change set {info['rows']:,} rows "
                          f"({info['updates']:,} updates + {info['inserts']:,} inserts) in {info['files']} file(s).")
        shutil.rmtree(dlt_dir, ignore_errors=True)
        shutil.rmtree(changes, ignore_errors=True)

    # scenario 4

    def e2e(self, rows: int) -> None:
        log(f"starting the emulator with {rows:,} rows")
        proc = subprocess.Popen([PY, "-m", "sfduck_emulator", "--rows", str(rows)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=ENV, cwd=str(ROOT), text=True)
        try:
            emu = None
            deadline = time.monotonic() + 300
            assert proc.stdout is not None
            while emu is None and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("the emulator exited before printing its settings")
                if line.startswith("{"):
                    emu = json.loads(line)
            stage = Row("sfduck sync, transport=stage", rows)
            rows4 = [
                (stage, lambda r: {"method": "e2e", "transport": "stage", "emulator": emu,
                                   "work_dir": self.fresh("e2e_stage")}, self.cleanup),
                (Row("sfduck sync, transport=arrow", rows, ref=stage),
                 lambda r: {"method": "e2e", "transport": "arrow", "emulator": emu,
                            "work_dir": self.fresh("e2e_arrow")}, self.cleanup),
            ]
            self.s4.rows += [r for r, _, _ in rows4]
            interleave(self.s4, rows4, self.reps)
            for r, _, _ in rows4:
                keys = ("unload_s", "query_s", "download_s", "load_s", "duration_s")
                parts = []
                for k in keys:
                    vals = [x.extra[k] for x in r.runs if x.extra.get(k) is not None]
                    if vals:
                        parts.append(f"{k} {statistics.median(vals):.2f}")
                r.note = "median phases: " + ", ".join(parts)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    # targets

    def targets(self) -> str:
        lines = ["### Targets (issue 5)", "", "| target | measured | verdict |", "|---|---|---|"]

        def add(target: str, measured: str, ok: bool | None) -> None:
            lines.append(f"| {target} | {measured} | {'met' if ok else 'MISSED' if ok is not None else 'n/a'} |")

        def find(table: Table, prefix: str, rows: int) -> Row | None:
            return next((r for r in table.rows if r.method.startswith(prefix) and r.rows == rows and r.runs), None)

        sizes = sorted({r.rows for r in self.s1.rows})
        for n in sizes:
            at = "" if n in (5_000_000, 20_000_000) else " (issue's target is at 5M/20M; informative here)"
            sf = find(self.s1, "**sfduck**", n)
            if sf and sf.ref:
                ratio = sf.median / sf.ref.median
                add(f"full sync ≤ 1.10× reference at {n:,}{at}",
                    f"{ratio:.2f}× (median), {sf.min / sf.ref.min:.2f}× (min)", ratio <= 1.10)
            at = "" if n == 5_000_000 else " (issue's target is at 5M; informative here)"
            for prefix, label in (("dlt", "dlt replace"), ("pandas", "the pandas path")):
                other = find(self.s1, prefix, n)
                if sf and other:
                    add(f"≥ 3× faster than {label} at {n:,}{at}", f"{other.median / sf.median:.2f}× (median)",
                        other.median / sf.median >= 3)
        sf_rss = {n: r.rss for n in sizes if (r := find(self.s1, "**sfduck**", n))}
        if sf_rss:
            top = max(sf_rss)
            add(f"full-sync peak RSS ≤ 512 MB (target at 20M; measured at {top:,})", f"{sf_rss[top]:.0f} MB",
                sf_rss[top] <= 512)
            if len(sf_rss) > 1:
                below = sorted(sf_rss)[-2]
                add(f"full-sync peak RSS flat from {below:,} to {top:,} rows (≤ +10%; smaller tables stay under "
                    "the bound)", ", ".join(f"{n:,}: {v:.0f} MB" for n, v in sorted(sf_rss.items())),
                    sf_rss[top] <= sf_rss[below] * 1.10)
        for n in sorted({r.rows for r in self.s2.rows}):
            ar = find(self.s2, "**sfduck**", n)
            if ar and ar.ref:
                ratio = ar.median / ar.ref.median
                add(f"Arrow ≤ 1.3× reference at {n:,}", f"{ratio:.2f}× (median)", ratio <= 1.3)
                add(f"Arrow peak RSS ≤ 512 MB at {n:,}", f"{ar.rss:.0f} MB", ar.rss <= 512)
        up = next((r for r in self.s3.rows if r.method.startswith("**sfduck**") and r.runs), None)
        if up and up.ref and up.ref.runs:
            ratio = up.median / up.ref.median
            add("upsert ≤ 1.2× fastest plain DuckDB", f"{ratio:.2f}× (median)", ratio <= 1.2)
            dm = next((r for r in self.s3.rows if r.method.startswith("dlt") and r.runs), None)
            if dm:
                add("upsert ≥ 3× faster than dlt merge", f"{dm.median / up.median:.2f}×", dm.median / up.median >= 3)
        return "\n".join(lines) + "\n"

    def report(self, command: str, started: dt.datetime, elapsed: float) -> str:
        versions = ", ".join(f"{p} {package_version(p)}" for p in ("duckdb", "pyarrow", "pandas", "dlt", "fakesnow",
                                                            "snowflake-connector-python"))
        head = [
            "# sfduck benchmark results", "",
            f"Command: `{command}`  ",
            f"Date: {started:%Y-%m-%d %H:%M} UTC, took {elapsed / 60:.1f} min; {self.reps} repetition(s) per method, "
            "methods interleaved within each repetition, each in its own process.  ",
            f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
            "shared with other engineers' test runs, so expect noise (load averages are given per scenario).  ",
            f"Versions: {versions}; sfduck at {self.commit}.  ",
            f"Floor under every peak RSS (interpreter + duckdb + pyarrow + sfduck_core imports): "
            f"{self.baseline_rss.get('plain', 0):.0f} MB; with dlt imported too: {self.baseline_rss.get('dlt', 0):.0f} MB.",
            "",
            "Rows/s uses the median. Peak RSS is the largest ru_maxrss of the method's process over its runs. "
            "Timings cover the operation only (opening the file through closing it, so DuckDB's checkpoint on close "
            "counts); process start and imports are excluded. Files are warm in the page cache for every method.",
            "",
            f"Data: {json.dumps(self.info)}", "",
        ]
        body = [t.markdown() for t in (self.s1, self.s2, self.s3, self.s4) if any(r.runs for r in t.rows)]
        return "\n".join(head) + "\n" + "\n".join(body) + "\n" + self.targets()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, help="one size instead of 1M/5M/20M (also the upsert base table)")
    p.add_argument("--quick", action="store_true", help="smoke check: 200k rows, 1 repetition, < 2 minutes")
    p.add_argument("--reps", type=int, help="repetitions per method (default 3; 1 with --quick)")
    p.add_argument("--scenarios", default="1,2,3,4", help="comma-separated subset of 1,2,3,4")
    p.add_argument("--compare-max-rows", type=int, default=5_000_000,
                   help="run dlt and pandas only up to this many rows (default 5M: the issue compares at 5M)")
    p.add_argument("--upsert-rows", type=int, help="base table of scenario 3 (default 5M, or --rows)")
    p.add_argument("--e2e-rows", type=int, help="rows of the emulator's table (default 1M)")
    p.add_argument("--work-dir", help="where generated data goes (default: a new /tmp/sfduck-bench-*)")
    p.add_argument("--out", help="markdown file to write (default bench/RESULTS.md; none with --quick)")
    p.add_argument("--keep", action="store_true", help="keep generated data")
    args = p.parse_args(argv)
    if args.quick:
        sizes = [args.rows or 200_000]
        args.reps = args.reps or 1
        upsert_rows = args.upsert_rows or sizes[0]
        e2e_rows = args.e2e_rows or 100_000
    else:
        sizes = [args.rows] if args.rows else [1_000_000, 5_000_000, 20_000_000]
        args.reps = args.reps or 3
        upsert_rows = args.upsert_rows or args.rows or 5_000_000
        e2e_rows = args.e2e_rows or 1_000_000
    scenarios = {int(s) for s in args.scenarios.split(",") if s.strip()}
    out = args.out or (None if args.quick else str(BENCH / "RESULTS.md"))
    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()

    bench = Bench(args)
    log(f"work dir {bench.work}")
    try:
        bench.baseline_rss["plain"] = run_method({"method": "baseline"}).rss_mb
        bench.baseline_rss["dlt"] = run_method({"method": "baseline", "dlt": True}).rss_mb
        todo = sorted(set(sizes) | ({upsert_rows} if 3 in scenarios else set()))
        for n in todo:
            if not scenarios & {1, 2} and n != upsert_rows:
                continue
            data, arrow = bench.gen_fact(n)
            base = bench.prep_base(n, data)
            if n in sizes and 1 in scenarios:
                bench.full_sync(n, data, base)
            if n in sizes and 2 in scenarios:
                bench.arrow_transport(n, data, arrow, base)
            if 3 in scenarios and n == upsert_rows:
                bench.upsert(n, data, base)
            shutil.rmtree(data, ignore_errors=True)
            for f in (arrow, base):
                f.unlink(missing_ok=True)
        if 4 in scenarios:
            bench.e2e(e2e_rows)
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    text = bench.report(command, started, time.perf_counter() - t0)
    return publish(text, out)


def package_version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def publish(text: str, out: str | None) -> int:
    """Print the results table and, when asked, write it to its RESULTS file."""
    print(text)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
