"""The emulator, driven by the real snowflake.connector over HTTP, as the sync engine will drive it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector
from snowflake.connector.errors import DatabaseError, OperationalError, ProgrammingError

from sfduck_emulator.demo_data import ALL_TYPES_COLUMNS, ALL_TYPES_ROWS, MIXED_CASE_ROWS
from sfduck_emulator.server import Emulator
from sfduck_emulator.settings import DEMO_DATABASE, DEMO_SCHEMA, EmulatorSettings

DATA_ROWS = 5000
TEST_DATABASE = "SFDUCK_EMULATOR_TEST"
TEST_SCHEMA = "WS_TEST"
REPO = Path(__file__).resolve().parents[2]
JSON_COLUMNS = {i for i, (_, typ) in enumerate(ALL_TYPES_COLUMNS) if typ in ("VARIANT", "OBJECT", "ARRAY")}
TZ_COLUMNS = {"TS_LTZ", "TS_TZ"}

# fakesnow materialises results through DuckDB's DB-API Arrow export, which warns on every query
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    # its own database: the session-wide emulator of conftest.py shares fakesnow's global data,
    # and reseeding SFDUCK_DEMO with fewer rows would change what the other test modules see
    emulator = Emulator(data_rows=DATA_ROWS, user="emulator_test", database=TEST_DATABASE, schema=TEST_SCHEMA)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def emu_settings(emu: Emulator) -> EmulatorSettings:
    return emu.settings


@pytest.fixture(scope="module")
def conn(emu_settings: EmulatorSettings) -> Iterator[snowflake.connector.SnowflakeConnection]:
    c = snowflake.connector.connect(**emu_settings.connect_kwargs())
    yield c
    c.close()


@pytest.fixture
def cur(conn: snowflake.connector.SnowflakeConnection) -> Iterator[Any]:
    with conn.cursor() as c:
        yield c


@pytest.fixture
def stage(cur: Any) -> str:
    name = f"S_{uuid.uuid4().hex[:8].upper()}"
    cur.execute(f"CREATE TEMPORARY STAGE {name}")
    return name


def _decode_json_columns(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(json.loads(v) if i in JSON_COLUMNS and v is not None else v for i, v in enumerate(row))


def _ntz_columns() -> list[str]:
    return [name for name, _ in ALL_TYPES_COLUMNS if name not in TZ_COLUMNS]


# -- settings and login -------------------------------------------------------------------------


def test_settings_shapes(emu_settings: EmulatorSettings) -> None:
    assert emu_settings.host == "127.0.0.1"
    assert emu_settings.protocol == "http"
    assert (emu_settings.database, emu_settings.schema) == (TEST_DATABASE, TEST_SCHEMA)
    env = emu_settings.as_env()
    assert env["SNOWFLAKE_PORT"] == str(emu_settings.port)
    assert set(env) == {
        "SNOWFLAKE_ACCOUNT",
        "SNOWFLAKE_USER",
        "SNOWFLAKE_PASSWORD",
        "SNOWFLAKE_DATABASE",
        "SNOWFLAKE_SCHEMA",
        "SNOWFLAKE_HOST",
        "SNOWFLAKE_PORT",
        "SNOWFLAKE_PROTOCOL",
    }
    kwargs = emu_settings.connect_kwargs()
    assert kwargs["password"] == emu_settings.password and len(emu_settings.password) >= 20
    assert kwargs["port"] == emu_settings.port


def test_login_ok(cur: Any) -> None:
    cur.execute("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA(), 41 + 1")
    assert cur.fetchall() == [(TEST_DATABASE, TEST_SCHEMA, 42)]


@pytest.mark.parametrize("field", ["password", "user"])
def test_wrong_credentials_refused(emu_settings: EmulatorSettings, field: str) -> None:
    kwargs = {**emu_settings.connect_kwargs(), field: "wrong-" + getattr(emu_settings, field)}
    with pytest.raises(DatabaseError) as info:
        snowflake.connector.connect(**kwargs)
    assert info.value.errno == 390100
    assert "Incorrect username or password was specified." in str(info.value)


# -- metadata --------------------------------------------------------------------------------------


def test_information_schema_lists_seed_tables(cur: Any) -> None:
    cur.execute(
        f"SELECT TABLE_NAME, ROW_COUNT FROM {TEST_DATABASE}.INFORMATION_SCHEMA.TABLES "
        f"WHERE TABLE_SCHEMA = '{TEST_SCHEMA}' ORDER BY TABLE_NAME"
    )
    assert cur.fetchall() == [
        ("ALL_TYPES", len(ALL_TYPES_ROWS)),
        ("EMPTY_TABLE", 0),
        ("Mixed Case", len(MIXED_CASE_ROWS)),
        ("ORDERS", 10_000),
        ("data", DATA_ROWS),
    ]


def test_desc_table(cur: Any) -> None:
    cur.execute("DESC TABLE ORDERS")
    assert [(r[0], r[1]) for r in cur.fetchall()] == [
        ("ORDER_ID", "NUMBER(38,0)"),
        ("CUSTOMER", "VARCHAR(16777216)"),
        ("AMOUNT", "NUMBER(12,2)"),
        ("STATUS", "VARCHAR(16777216)"),
        ("UPDATED_AT", "TIMESTAMP_NTZ(9)"),
    ]
    cur.execute('DESC TABLE "Mixed Case"')
    assert [r[0] for r in cur.fetchall()] == ["ID", 'Weird "col"', "lower col"]


def test_seed_is_deterministic(cur: Any) -> None:
    cur.execute('SELECT COUNT(*), SUM(ID), COUNT(CATEGORY), COUNT(CREATED_AT), MIN(CREATED_AT) FROM "data"')
    count, id_sum, categories, created, first = cur.fetchone()
    assert (count, id_sum) == (DATA_ROWS, DATA_ROWS * (DATA_ROWS + 1) // 2)
    cur.execute('SELECT AMOUNT FROM "data" ORDER BY ID')
    assert [r[0] for r in cur] == [Decimal((i * 7919) % 100000000) / 100 for i in range(1, DATA_ROWS + 1)]
    assert categories == DATA_ROWS - DATA_ROWS // 101
    assert created == DATA_ROWS - DATA_ROWS // 997
    assert first == datetime(2020, 1, 1, 0, 0, 37, 123)


def test_all_types_fetchall_matches_constant(cur: Any) -> None:
    cur.execute(f"SELECT {', '.join(n for n, _ in ALL_TYPES_COLUMNS)} FROM ALL_TYPES ORDER BY ID")
    rows = [_decode_json_columns(tuple(bytes(v) if isinstance(v, bytearray) else v for v in r)) for r in cur]
    assert rows == ALL_TYPES_ROWS


def test_null_timestamps_are_none(cur: Any) -> None:
    sql = "SELECT TS_NTZ9, TS_NTZ3, TS_LTZ, TS_TZ, TM, DT FROM ALL_TYPES WHERE ID = 1"
    cur.execute(sql)
    assert cur.fetchall() == [(None,) * 6]
    cur.execute(sql)
    table = cur.fetch_arrow_all()
    assert table.num_rows == 1
    assert [table.column(i).null_count for i in range(table.num_columns)] == [1] * 6
    # and among real values: every 997th CREATED_AT is NULL
    cur.execute('SELECT ID, CREATED_AT FROM "data" WHERE ID IN (996, 997) ORDER BY ID')
    assert cur.fetchall()[1] == (997, None)
    cur.execute('SELECT ID, CREATED_AT FROM "data" WHERE ID IN (996, 997) ORDER BY ID')
    assert cur.fetch_arrow_all().column("CREATED_AT").to_pylist()[1] is None


def test_alter_session_is_accepted(cur: Any) -> None:
    for sql in (
        "ALTER SESSION SET ENABLE_UNLOAD_PHYSICAL_TYPE_OPTIMIZATION = FALSE",
        "ALTER SESSION SET TIMEZONE = 'UTC'",
        "ALTER SESSION UNSET TIMEZONE",
    ):
        cur.execute(sql)
        assert cur.fetchall() == [("Statement executed successfully.",)]


# -- COPY INTO @stage / GET -------------------------------------------------------------------------


def _list(cur: Any, stage: str) -> list[tuple[str, int]]:
    cur.execute(f"LIST @{stage}")
    return sorted((r[0], r[1]) for r in cur.fetchall())


def test_copy_into_splits_like_snowflake_and_get_round_trips(cur: Any, stage: str, tmp_path: Path) -> None:
    query = 'SELECT ID, AMOUNT, CATEGORY, CREATED_AT, IS_ACTIVE, EVENT_DATE, SCORE FROM "data"'
    cur.execute(
        f"COPY INTO @{stage}/run1/data_x.parquet FROM ({query}) "
        "FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE OVERWRITE = TRUE MAX_FILE_SIZE = 40000 SINGLE = FALSE"
    )
    assert [c.name for c in cur.description] == ["rows_unloaded", "input_bytes", "output_bytes"]
    ((rows, input_bytes, output_bytes),) = cur.fetchall()
    assert rows == DATA_ROWS and input_bytes > 0

    listed = _list(cur, stage)
    assert len(listed) >= 3
    expected_names = [
        f"{stage.lower()}/run1/data_x.parquet_0_0_{i}.snappy.parquet" for i in range(len(listed))
    ]
    assert sorted(name for name, _ in listed) == sorted(expected_names)
    assert sum(size for _, size in listed) == output_bytes
    assert all(size <= 40000 * 1.25 for _, size in listed)

    cur.execute(f"GET @{stage}/run1/data_x 'file://{tmp_path}/' PARALLEL = 4")
    got = cur.fetchall()
    assert sorted(r[0] for r in got) == sorted(n.rsplit("/", 1)[1] for n, _ in listed)
    assert {r[2] for r in got} == {"DOWNLOADED"}
    assert sorted(os.listdir(tmp_path)) == sorted(r[0] for r in got)

    files = sorted(tmp_path.glob("*.parquet"))
    assert pq.read_schema(files[0]).field("AMOUNT").type == pa.decimal128(18, 2)
    assert pq.read_schema(files[0]).field("CREATED_AT").type == pa.timestamp("us")
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "SNAPPY"
    parquet_rows = duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/*.parquet') ORDER BY ID").fetchall()
    cur.execute(f"{query} ORDER BY ID")
    assert parquet_rows == cur.fetchall()


def test_all_types_parquet_values(cur: Any, stage: str, tmp_path: Path) -> None:
    columns = _ntz_columns()
    cur.execute(
        f"COPY INTO @{stage}/t/ FROM (SELECT {', '.join(columns)} FROM ALL_TYPES) "
        "FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE"
    )
    assert cur.fetchone()[0] == len(ALL_TYPES_ROWS)
    cur.execute(f"GET @{stage}/t/ 'file://{tmp_path}/'")
    assert [r[0] for r in cur.fetchall()] == ["data_0_0_0.snappy.parquet"]
    table = pq.read_table(tmp_path / "data_0_0_0.snappy.parquet")
    assert table.column_names == columns
    assert table.schema.field("NUM_38_10").type == pa.decimal128(38, 10)
    assert table.schema.field("TM").type == pa.time64("us")
    assert table.schema.field("VAR").type == pa.string()
    keep = [i for i, (name, _) in enumerate(ALL_TYPES_COLUMNS) if name not in TZ_COLUMNS]
    expected = [tuple(row[i] for i in keep) for row in ALL_TYPES_ROWS]
    json_positions = {n for n, i in enumerate(keep) if i in JSON_COLUMNS}
    got = sorted(
        (
            tuple(
                json.loads(v) if n in json_positions and v is not None else v
                for n, v in enumerate(r.values())
            )
            for r in table.to_pylist()
        ),
        key=lambda r: r[0],
    )
    assert got == expected


def test_without_header_columns_are_numbered(cur: Any, stage: str, tmp_path: Path) -> None:
    cur.execute(f'COPY INTO @{stage}/nh FROM "Mixed Case" FILE_FORMAT = (TYPE = PARQUET)')
    assert cur.fetchone()[0] == len(MIXED_CASE_ROWS)
    cur.execute(f"GET @{stage}/nh 'file://{tmp_path}/'")
    table = pq.read_table(tmp_path / "nh_0_0_0.snappy.parquet")
    assert table.column_names == ["col1", "col2", "col3"]
    assert sorted(tuple(r.values()) for r in table.to_pylist()) == MIXED_CASE_ROWS


def test_existing_files_need_overwrite(cur: Any, stage: str) -> None:
    sql = f"COPY INTO @{stage}/again FROM (SELECT ORDER_ID FROM ORDERS) FILE_FORMAT = (TYPE = PARQUET)"
    cur.execute(sql)
    with pytest.raises(ProgrammingError, match="Files already existing at the unload destination"):
        cur.execute(sql)
    cur.execute(sql + " OVERWRITE = TRUE")
    assert cur.fetchone()[0] == 10_000
    assert [n for n, _ in _list(cur, stage)] == [f"{stage.lower()}/again_0_0_0.snappy.parquet"]


def test_zero_rows_writes_no_file(cur: Any, stage: str, tmp_path: Path) -> None:
    cur.execute(f"COPY INTO @{stage}/empty FROM EMPTY_TABLE FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE")
    assert cur.fetchall() == [(0, 0, 0)]
    assert _list(cur, stage) == []
    with pytest.raises(OperationalError) as info:
        cur.execute(f"GET @{stage}/empty 'file://{tmp_path}/'")
    assert info.value.errno == 253006


def test_get_into_missing_dir_fails(cur: Any, stage: str, tmp_path: Path) -> None:
    cur.execute(f"COPY INTO @{stage}/x FROM (SELECT 1 AS ONE) FILE_FORMAT = (TYPE = PARQUET)")
    with pytest.raises(ProgrammingError) as info:
        cur.execute(f"GET @{stage}/x 'file://{tmp_path}/missing/'")
    assert info.value.errno == 253005


@pytest.mark.parametrize("column", sorted(TZ_COLUMNS))
def test_timezone_aware_unload_refused(cur: Any, stage: str, column: str) -> None:
    with pytest.raises(ProgrammingError) as info:
        cur.execute(
            f"COPY INTO @{stage}/tz FROM (SELECT ID, {column} FROM ALL_TYPES) FILE_FORMAT = (TYPE = PARQUET)"
        )
    assert info.value.errno == 100071
    assert "TIMESTAMP_TZ and LTZ types are not supported for unloading to Parquet" in info.value.msg
    assert _list(cur, stage) == []
    # the documented workaround works
    cur.execute(
        f"COPY INTO @{stage}/tz FROM (SELECT ID, {column}::TIMESTAMP_NTZ AS C FROM ALL_TYPES) "
        "FILE_FORMAT = (TYPE = PARQUET)"
    )
    assert cur.fetchone()[0] == len(ALL_TYPES_ROWS)


def test_missing_stage_errors(cur: Any) -> None:
    with pytest.raises(ProgrammingError) as info:
        cur.execute("COPY INTO @NO_SUCH_STAGE/x FROM ORDERS FILE_FORMAT = (TYPE = PARQUET)")
    assert info.value.errno == 2003


# -- stage housekeeping ----------------------------------------------------------------------------


def test_user_stage_list_and_remove(cur: Any, tmp_path: Path) -> None:
    prefix = f"sfduck_{uuid.uuid4().hex[:8]}/"
    cur.execute(
        f"COPY INTO @~/{prefix} FROM (SELECT * FROM ORDERS) FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE"
    )
    assert cur.fetchone()[0] == 10_000
    cur.execute(f"LIST @~/{prefix}")
    assert [r[0] for r in cur.fetchall()] == [f"{prefix}data_0_0_0.snappy.parquet"]
    cur.execute(f"GET @~/{prefix} 'file://{tmp_path}/'")
    assert duckdb.sql(f"SELECT COUNT(*) FROM '{tmp_path}/*.parquet'").fetchall() == [(10_000,)]
    cur.execute(f"REMOVE @~/{prefix}")
    assert cur.fetchall() == [(f"{prefix}data_0_0_0.snappy.parquet", "removed")]
    cur.execute(f"LIST @~/{prefix}")
    assert cur.fetchall() == []


def test_quoted_qualified_stage_names_and_server_side_bindings(
    emu_settings: EmulatorSettings, tmp_path: Path
) -> None:
    qmark = snowflake.connector.connect(**emu_settings.connect_kwargs(), paramstyle="qmark")
    cur = qmark.cursor()
    stage = f'"{TEST_DATABASE}"."{TEST_SCHEMA}"."Quoted Stage"'
    cur.execute(f"CREATE TEMPORARY STAGE {stage} FILE_FORMAT = (TYPE = PARQUET)")
    cur.execute(
        f"COPY INTO @{stage}/q/run FROM (SELECT ORDER_ID FROM ORDERS WHERE ORDER_ID <= ?) "
        "FILE_FORMAT = (TYPE = PARQUET COMPRESSION = SNAPPY) HEADER = TRUE OVERWRITE = TRUE",
        (25,),
    )
    assert cur.fetchone()[0] == 25
    cur.execute(f"LIST @{stage}/q/")
    assert [r[0] for r in cur.fetchall()] == ["quoted stage/q/run_0_0_0.snappy.parquet"]
    cur.execute(f"GET @{stage}/q/run_0_0_0.snappy.parquet 'file://{tmp_path}/'")
    assert [r[:3] for r in cur.fetchall()] == [
        ("run_0_0_0.snappy.parquet", (tmp_path / "run_0_0_0.snappy.parquet").stat().st_size, "DOWNLOADED")
    ]
    assert pq.read_table(tmp_path / "run_0_0_0.snappy.parquet").column("ORDER_ID").to_pylist() == list(
        range(1, 26)
    )
    cur.execute(f"DROP STAGE IF EXISTS {stage}")
    assert cur.fetchall() == [("Quoted Stage successfully dropped.",)]
    qmark.close()


def test_drop_stage_removes_files(cur: Any, tmp_path: Path) -> None:
    from fakesnow.transforms.stage import internal_dir

    cur.execute("CREATE STAGE DROP_ME")
    cur.execute("COPY INTO @DROP_ME/f FROM (SELECT ORDER_ID FROM ORDERS) FILE_FORMAT = (TYPE = PARQUET)")
    directory = internal_dir(f"{TEST_DATABASE}.{TEST_SCHEMA}.DROP_ME")
    assert os.listdir(directory) == ["f_0_0_0.snappy.parquet"]
    cur.execute("DROP STAGE DROP_ME")
    assert cur.fetchall() == [("DROP_ME successfully dropped.",)]
    assert not os.path.exists(directory)
    with pytest.raises(ProgrammingError) as info:
        cur.execute("LIST @DROP_ME")
    assert info.value.errno == 2003
    with pytest.raises(ProgrammingError):
        cur.execute("DROP STAGE DROP_ME")
    cur.execute("DROP STAGE IF EXISTS DROP_ME")
    assert cur.fetchall() == [("Drop statement executed successfully (DROP_ME already dropped).",)]
    with pytest.raises(ProgrammingError) as info:
        cur.execute(f"GET @DROP_ME/f 'file://{tmp_path}/'")
    assert info.value.errno == 2003


def test_temporary_stage_dropped_at_logout(emu_settings: EmulatorSettings, cur: Any) -> None:
    with snowflake.connector.connect(**emu_settings.connect_kwargs()) as other:
        other.cursor().execute("CREATE TEMPORARY STAGE SHORT_LIVED")
        other.cursor().execute("COPY INTO @SHORT_LIVED FROM ORDERS FILE_FORMAT = (TYPE = PARQUET)")
        cur.execute("LIST @SHORT_LIVED")  # fakesnow shares stages across sessions
        assert len(cur.fetchall()) == 1
    with pytest.raises(ProgrammingError) as info:
        cur.execute("LIST @SHORT_LIVED")
    assert info.value.errno == 2003


# -- the command line --------------------------------------------------------------------------------


def _read_lines_until_json(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    """stdout lines up to the JSON settings line (read in a thread: readline would block)."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2).rstrip("\n")
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith("{"):
            return seen
    raise AssertionError(f"no settings printed in {timeout}s: {seen}")


def test_main_prints_settings_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfduck_emulator", "--rows", "100", "--password", "pw-test"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _read_lines_until_json(proc, timeout=20)
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export ")
        )
        assert exports["SNOWFLAKE_PASSWORD"] == "pw-test"
        assert (exports["SNOWFLAKE_DATABASE"], exports["SNOWFLAKE_SCHEMA"]) == (DEMO_DATABASE, DEMO_SCHEMA)
        printed = json.loads(lines[-1])
        assert printed["port"] == int(exports["SNOWFLAKE_PORT"])
        remote = EmulatorSettings(**printed)
        with snowflake.connector.connect(**remote.connect_kwargs()) as c:
            assert c.cursor().execute('SELECT COUNT(*) FROM "data"').fetchone() == (100,)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_embedded_emulator_is_a_singleton() -> None:
    # in a child process: it seeds a million rows and would replace this module's demo tables
    code = (
        "import threading\n"
        "from sfduck_emulator.server import embedded_emulator\n"
        "out = []\n"
        "ts = [threading.Thread(target=lambda: out.append(embedded_emulator())) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert len(out) == 4 and all(s is out[0] for s in out), out\n"
        "import snowflake.connector\n"
        "c = snowflake.connector.connect(**out[0].connect_kwargs())\n"
        "print(c.cursor().execute('SELECT COUNT(*) FROM \"data\"').fetchone()[0])\n"
    )
    env = {**os.environ, "SFDUCK_DEMO_ROWS": "1234"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1234"


def test_time_values_exact(cur: Any) -> None:
    cur.execute("SELECT TM FROM ALL_TYPES WHERE ID IN (2, 4) ORDER BY ID")
    assert cur.fetchall() == [(dtime(23, 59, 59, 999999),), (dtime(12, 34, 56, 123456),)]
    cur.execute("SELECT DT FROM ALL_TYPES WHERE ID = 3")
    assert cur.fetchall() == [(date(1, 1, 1),)]


def test_importing_the_emulator_patches_nothing_until_one_starts() -> None:
    code = (
        "import warnings, fakesnow.arrow\n"
        "original, filters = fakesnow.arrow.timestamp_to_sf_struct, list(warnings.filters)\n"
        "import sfduck_emulator, sfduck_emulator.server, sfduck_emulator.app\n"
        "assert fakesnow.arrow.timestamp_to_sf_struct is original, 'patched at import'\n"
        "assert list(warnings.filters) == filters, 'warning filters changed at import'\n"
        "from sfduck_emulator.server import Emulator\n"
        "with Emulator(seed=False):\n"
        "    assert fakesnow.arrow.timestamp_to_sf_struct is not original\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
