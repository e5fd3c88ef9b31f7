"""`sfduck reader` for real: a fresh venv holding only the pip packages it names, with no network
(a network namespace of its own when the machine allows one) and an empty HOME (no extension
cached), runs the printed lines and counts a synced table's rows, for a SQLite-catalog lake and a
DuckDB file. The venv's wheels are repacked from this environment's installed packages, so the
test needs no package index either."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import env_for

ROOT = Path(__file__).resolve().parents[2]


def _repack(name: str, into: Path, done: set[str]) -> None:
    """A wheel of the installed distribution `name` (and of what it requires), from its RECORD."""
    dist = importlib.metadata.distribution(name)
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in done:
        return
    done.add(key)
    info = next(f for f in dist.files or [] if f.name == "WHEEL" and f.parent.name.endswith(".dist-info"))
    tag = next(line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("Tag:"))
    wheel = into / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for file in dist.files or []:
            path = Path(str(file.locate()))
            if ".." not in file.parts and "__pycache__" not in file.parts and path.is_file():
                zf.write(path, str(file))
    for requirement in dist.requires or []:
        if ";" not in requirement:
            _repack(re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0], into, done)


def _offline() -> list[str]:
    """A command prefix that takes the network away (a network namespace), when allowed here."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    into = tmp_path_factory.mktemp("wheelhouse")
    done: set[str] = set()
    for name in ("duckdb", "duckdb-extensions", "duckdb-extension-ducklake", "duckdb-extension-sqlite-scanner"):
        _repack(name, into, done)
    return into


def analyst_venv(where: Path, wheelhouse: Path, packages: list[str]) -> Path:
    """A plain venv (no system site-packages) holding only `packages`, installed without an index."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                    "--no-cache-dir", "--find-links", str(wheelhouse), *packages],
                   check=True, capture_output=True, text=True, timeout=300,
                   env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list", "--format=freeze"],
                            check=True, capture_output=True, text=True).stdout.split()
    def norm(requirement: str) -> str:
        return requirement.split("==")[0].lower().replace("_", "-")

    assert {norm(line) for line in listed} == {norm(p) for p in packages}, listed  # nothing else
    return python


def run_offline(python: Path, args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([*_offline(), str(python), *args], cwd=home, env=env, capture_output=True, text=True,
                          timeout=300)


def reader(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "sfduck_core", "reader", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("target_kind", ["lake", "file"])
def test_the_printed_lines_open_the_synced_data_offline(
        target_kind: str, engine: SyncEngine, emulator: EmulatorSettings, tmp_path: Path, wheelhouse: Path) -> None:
    schema = emulator.schema
    engine.register(schema, "ORDERS")
    job = engine.sync(SyncRequest(schema, "ORDERS"))
    rows = job["stats"]["table_stats"]["row_count"]
    assert rows > 0
    env = env_for(emulator, tmp_path, target_kind)

    script = reader(env, schema, "ORDERS")
    assert "password" not in script.lower() or "YOUR_PASSWORD" in script
    [pip_line] = [line for line in script.splitlines() if "pip install" in line]
    packages = pip_line.split("pip install", 1)[1].split()
    assert all(re.fullmatch(r"[a-z-]+==\d+\.\d+\.\d+", p) for p in packages), packages
    python = analyst_venv(tmp_path / "analyst", wheelhouse, packages)
    home = tmp_path / "home"
    home.mkdir()

    first_query = script.rstrip().splitlines()[-1]
    assert first_query.startswith("con.sql(") and first_query.endswith(".show()")
    counted = script + f"print('ROWS', {first_query.removesuffix('.show()')}.fetchone()[0])\n"
    (home / "open.py").write_text(counted)
    out = run_offline(python, ["open.py"], home)
    assert out.returncode == 0, out.stderr
    assert f"ROWS {rows}" in out.stdout

    # the SQL form, in the same bare DuckDB (extension files loaded by path), also offline
    sql = reader(env, "--sql", schema, "ORDERS")
    statements = [s for s in re.sub(r"--[^\n]*\n", "", sql).split(";\n") if s.strip()]
    (home / "statements.json").write_text(json.dumps(statements))
    (home / "run_sql.py").write_text(
        "import duckdb, json\ncon = duckdb.connect()\n*setup, last = json.load(open('statements.json'))\n"
        "for statement in setup:\n    con.execute(statement)\nprint('ROWS', con.execute(last).fetchone()[0])\n")
    out = run_offline(python, ["run_sql.py"], home)
    assert out.returncode == 0, out.stderr
    assert f"ROWS {rows}" in out.stdout
