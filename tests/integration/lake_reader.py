"""An analyst's independent reader of a DuckLake: plain duckdb, the lake attached READ_ONLY, one
query every 50 ms until the stop file appears. Prints one JSON line per read: the table's
signature (row count and a hash of every row) and how long the read took, or the error.

Usage: lake_reader.py CATALOG_FILE DATA_PATH SCHEMA TABLE STOP_FILE
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import duckdb


def extension(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return str(next(folder.glob(f"extensions/v{duckdb.__version__}/**/{name}.duckdb_extension")))


def main() -> None:
    catalog, data_path, schema, table, stop_file = sys.argv[1:6]
    # What is measured is waiting for the writer, not the CPU share a loaded test machine leaves
    # (2 cores under load 25 stretched 0.05 s of CPU into 1.8 s); where allowed, read first.
    with contextlib.suppress(OSError):
        os.nice(-20)
    con = duckdb.connect(config={"threads": 1})
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"LOAD '{extension('duckdb_extension_sqlite_scanner', 'sqlite_scanner')}'")
    con.execute(f"LOAD '{extension('duckdb_extension_ducklake', 'ducklake')}'")
    con.execute(f"ATTACH 'ducklake:sqlite:{catalog}' AS lake (DATA_PATH '{data_path}', READ_ONLY)")
    name = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
    query = f"SELECT count(*), coalesce(sum(hash(t)), 0)::VARCHAR FROM lake.{name} t"
    con.execute(query).fetchone()  # the first query also reads the catalog: not what is measured
    print("READY", flush=True)
    while not Path(stop_file).exists():
        started, cpu = time.monotonic(), time.process_time()
        try:
            count, digest = con.execute(query).fetchone()
            line = {"sig": [count, digest]}
        except duckdb.Error as exc:
            line = {"error": str(exc).splitlines()[0]}
        line["s"] = round(time.monotonic() - started, 4)
        line["cpu"] = round(time.process_time() - cpu, 4)
        print(json.dumps(line), flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
