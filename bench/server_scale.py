"""sfduck server at scale: `python bench/server_scale.py [--jobs N] [--clients C] [--rows R]`.

Issue 10's numbers, measured against the real server process (`streamlit run sfduck_server/app.py`,
as ./scripts/dashboard.sh starts it) on demo data:
  1. with N jobs (default 500,000) over a year for 30 registered tables: the History and Board pages' server-side runs
     (Streamlit's AppTest, logged in as admin), and the jobs endpoint's latency under C concurrent
     clients (default 20): p50, p95, max, errors;
  2. a full sync of R rows (default 1,000,000) alone, and again while C clients poll its status.
Prints a table of measured values and ratios; the aims are the issue's (1.5 s, 200 ms, 1.2x).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "WORKSPACE_833213390"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_jobs(db: Path, count: int) -> None:
    """`count` finished jobs over the last year for 30 registered tables, as schedules would leave
    them (the same seeding as the browser test's ninety days)."""
    sys.path.insert(0, str(ROOT))
    from tests.history_seed import seed_history

    seed_history(db, count, days=365)


def page_seconds(env: dict[str, str], page: str, runs: int = 3) -> list[float]:
    """Server-side time of a page (a run after the first), in a child process with the server's settings."""
    code = r"""
import json, sys, time
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("streamlit_app.py", default_timeout=300).run()
fields = {t.label: t for t in at.text_input}
fields["Username"].input("admin"); fields["Password"].input("admin")
[b for b in at.button if b.label == "Log in"][0].click(); at.run()
times = []
for _ in range(int(sys.argv[1])):
    started = time.perf_counter()
    at.switch_page(sys.argv[2]).run()
    times.append(time.perf_counter() - started)
    assert not at.exception, at.exception
    assert at.metric or at.markdown, "the page shows nothing"
print(json.dumps(times))
"""
    out = subprocess.run([sys.executable, "-c", code, str(runs), page], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


class Server:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "sfduck_server/app.py", "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.get("/health", auth=False)
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / "server.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        form = b"username=admin&password=admin"
        with urllib.request.urlopen(urllib.request.Request(f"{self.url}/auth/token", data=form), timeout=60) as r:
            self.token = json.load(r)["access_token"]

    def request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)

    def get(self, path: str, auth: bool = True) -> dict:
        return self.request("GET", path, auth=auth)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def hammer(server: Server, paths: list[str], clients: int, per_client: int) -> tuple[list[float], int]:
    """`clients` threads each GET their share of `paths` in turn; latencies (s) and error count."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(per_client):
            started = time.perf_counter()
            try:
                server.get(paths[(k + i) % len(paths)])
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
            except Exception as exc:
                with lock:
                    errors[0] += 1
                    if errors[0] <= 3:
                        detail = exc.read().decode()[:300] if hasattr(exc, "read") else ""
                        log(f"request failed: {exc} {detail}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0]


def timed_sync(server: Server, pollers: int) -> tuple[float, int, int]:
    """A forced full sync of "data" through the API; (its duration_s, status polls made, errors)."""
    started = server.request("POST", "/sync/start", {"table_name": "data", "schema_name": SCHEMA,
                                                     "strategy": "full", "force": True})
    sync_id = started["sync_id"]
    done = threading.Event()
    polls, errors = [0], [0]
    lock = threading.Lock()

    def poll() -> None:
        while not done.is_set():
            try:
                server.get(f"/sync/status/{sync_id}")
                with lock:
                    polls[0] += 1
            except Exception:
                with lock:
                    errors[0] += 1
            time.sleep(0.1)

    threads = [threading.Thread(target=poll) for _ in range(pollers)]
    for t in threads:
        t.start()
    while (job := server.get(f"/sync/status/{sync_id}"))["status"] in ("pending", "running"):
        time.sleep(0.2)
    done.set()
    for t in threads:
        t.join()
    if job["status"] != "completed":
        raise RuntimeError(f"sync failed: {job['error_message']}")
    return float(job["stats"]["duration_s"]), polls[0], errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=25, help="jobs-endpoint requests per client")
    parser.add_argument("--pages-only", action="store_true", help="only the History and Board page runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfduck-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "SFDUCK_"))}
        env.update(SFDUCK_DUCKDB_PATH=str(tmp / "sfduck.duckdb"), SFDUCK_DATA_DIR=str(tmp / "data"),
                   SFDUCK_USERS_FILE=str(tmp / "users.yaml"), SFDUCK_DEMO_ROWS=str(args.rows),
                   PYTHONPATH=str(ROOT))
        log(f"seeding {args.jobs:,} jobs")
        started = time.perf_counter()
        seed_jobs(tmp / "sfduck.duckdb", args.jobs)
        log(f"seeded in {time.perf_counter() - started:.1f} s; History and Board pages (AppTest)")
        history = page_seconds(env, "pages/history.py")
        board = page_seconds(env, "pages/board.py")
        log(f"History page runs: {', '.join(f'{t:.2f} s' for t in history)}; "
            f"Board: {', '.join(f'{t:.2f} s' for t in board)}")
        if args.pages_only:
            return
        log("starting the server")
        server = Server(env, tmp)
        try:
            paths = ["/sync/jobs?limit=100", "/sync/jobs?limit=100&table_name=SEEDED_7&status=failed",
                     "/sync/jobs?limit=100&offset=5000", "/sync/jobs?trigger=api&limit=50",
                     f"/sync/jobs?since=2026-06-01T00:00:00&schema_name={SCHEMA}&limit=100"]
            server.get(paths[0])  # warm up
            log(f"jobs endpoint, {args.clients} clients x {args.requests} requests")
            latencies, errors = hammer(server, paths, args.clients, args.requests)
            server.request("POST", "/sync/tables/register", {"table_name": "data", "schema_name": SCHEMA})
            timed_sync(server, 0)  # warm up (emulator seeding, first connections)
            log(f"{args.rows:,}-row sync alone, then with {args.clients} pollers (2 each)")
            alone = [timed_sync(server, 0)[0] for _ in range(2)]
            polled = [timed_sync(server, args.clients) for _ in range(2)]
        finally:
            server.stop()
    quantiles = statistics.quantiles(latencies, n=100)
    alone_s, polled_s = statistics.median(alone), statistics.median(p[0] for p in polled)
    rows = [
        ("History page server-side run, median of 3", f"{statistics.median(history):.2f} s", "aim 1.5 s"),
        ("Board page server-side run (30 tables), median of 3", f"{statistics.median(board):.2f} s", ""),
        (f"jobs endpoint p50 ({args.clients} clients, {len(latencies)} requests)", f"{quantiles[49] * 1000:.0f} ms",
         ""),
        ("jobs endpoint p95", f"{quantiles[94] * 1000:.0f} ms", "aim 200 ms"),
        ("jobs endpoint max", f"{max(latencies) * 1000:.0f} ms", ""),
        ("jobs endpoint errors", str(errors), "aim 0"),
        (f"{args.rows:,}-row sync alone, median of 2", f"{alone_s:.2f} s", ""),
        (f"same sync while {args.clients} clients poll its status", f"{polled_s:.2f} s",
         f"{polled_s / alone_s:.2f}x (aim 1.2x); {sum(p[1] for p in polled)} polls, "
         f"{sum(p[2] for p in polled)} errors"),
    ]
    print(f"\nsfduck server at scale: {args.jobs:,} jobs seeded, {os.cpu_count()} cores\n")
    print("| measure | value | note |\n|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
