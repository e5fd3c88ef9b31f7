"""The demo tables, seeded identically in every process."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from typing import Any

import fakesnow.server as fs_server

from sfduck_core.sqlident import qualified
from sfduck_emulator.settings import DEMO_DATABASE, DEMO_SCHEMA
from sfduck_emulator.table_stats import refresh_table_stats

UTC = dt.UTC

#: (column name, Snowflake type) of ALL_TYPES, in order.
ALL_TYPES_COLUMNS: list[tuple[str, str]] = [
    ("ID", "NUMBER(38,0)"),
    ("NUM_38_0", "NUMBER(38,0)"),
    ("NUM_18_0", "NUMBER(18,0)"),
    ("NUM_10_2", "NUMBER(10,2)"),
    ("NUM_38_10", "NUMBER(38,10)"),
    ("FLT", "FLOAT"),
    ("STR", "VARCHAR"),
    ("CHR5", "CHAR(5)"),
    ("BIN", "BINARY"),
    ("BOOL", "BOOLEAN"),
    ("DT", "DATE"),
    ("TM", "TIME"),
    ("TS_NTZ9", "TIMESTAMP_NTZ(9)"),
    ("TS_NTZ3", "TIMESTAMP_NTZ(3)"),
    ("TS_LTZ", "TIMESTAMP_LTZ"),
    ("TS_TZ", "TIMESTAMP_TZ"),
    ("VAR", "VARIANT"),
    ("OBJ", "OBJECT"),
    ("ARR", "ARRAY"),
]

#: The rows of ALL_TYPES as Python values, in ALL_TYPES_COLUMNS order, ordered by ID.
#: NUMBER(p,0) -> int, NUMBER(p,s>0) -> Decimal, FLOAT -> float, BINARY -> bytes,
#: TIMESTAMP_NTZ -> naive datetime, TIMESTAMP_LTZ/TZ -> aware datetime in UTC (fakesnow keeps the
#: instant only), VARIANT/OBJECT/ARRAY -> the parsed JSON value (compare with json.loads).
#: Precision is what fakesnow can hold: microseconds, int64. DATE, TIMESTAMP_LTZ and TIMESTAMP_TZ
#: reach years 1 and 9999; TIMESTAMP_NTZ stays inside 1677-09-22 .. 2262-04-10 because fakesnow's
#: DESC TABLE calls every NTZ column TIMESTAMP_NTZ(9), whose exact DuckDB type TIMESTAMP_NS cannot
#: hold more (a real NTZ(9) column CAN: the sync engine has to decide what to do with those).
ALL_TYPES_ROWS: list[tuple[Any, ...]] = [
    (1, *([None] * 18)),
    (
        2,
        9223372036854775807,
        999999999999999999,
        Decimal("99999999.99"),
        Decimal("9999999999999999999999999999.9999999999"),
        1.7976931348623157e308,
        "zoë ✓ 日本語 🦆",
        "abcde",
        b"\x00\xff\x10",
        True,
        dt.date(9999, 12, 31),
        dt.time(23, 59, 59, 999999),
        dt.datetime(2262, 4, 10, 23, 59, 59, 999999),
        dt.datetime(2262, 4, 10, 23, 59, 59, 999000),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        {"k": [1, 2.5, "x", None, True], "nested": {"deep": "yes"}},
        {"a": {"b": "c"}, "n": -1},
        [1, "two", None, {"three": 3}],
    ),
    (
        3,
        -9223372036854775808,
        -999999999999999999,
        Decimal("-99999999.99"),
        Decimal("-9999999999999999999999999999.9999999999"),
        -1e308,
        "",
        "",
        b"",
        False,
        dt.date(1, 1, 1),
        dt.time(0, 0, 0),
        dt.datetime(1677, 9, 22, 0, 0, 0),
        dt.datetime(1677, 9, 22, 0, 0, 0),
        dt.datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        dt.datetime(1, 1, 1, 0, 0, 0, tzinfo=UTC),
        [],
        {},
        [],
    ),
    (
        4,
        0,
        1,
        Decimal("0.01"),
        Decimal("0.0000000001"),
        1e-300,
        "it's \"quoted\" \\ back'slash\nnew line",
        "a'b\"c",
        b"'\"\\",
        None,
        dt.date(1970, 1, 1),
        dt.time(12, 34, 56, 123456),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000),
        dt.datetime(1970, 1, 1, 0, 0, 0),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        dt.datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC),
        "just a string",
        {"quote": 'it\'s "q"'},
        ["a'b", 'c"d'],
    ),
    (
        5,
        42,
        -7,
        Decimal("12345.67"),
        Decimal("3.1415926536"),
        0.1,
        "hello",
        "hi",
        b"hello",
        True,
        dt.date(2024, 2, 29),
        dt.time(8, 30),
        dt.datetime(2024, 2, 29, 12, 34, 56, 123456),
        dt.datetime(2024, 2, 29, 12, 34, 56, 123000),
        dt.datetime(2024, 2, 29, 7, 4, 56, 123456, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 7, 4, 56, 123456, tzinfo=UTC),
        {"id": 5, "tags": ["x", "y"]},
        {"k": "v"},
        [1, 2, 3],
    ),
]

#: (ID, Weird "col", lower col) rows of "Mixed Case".
MIXED_CASE_ROWS: list[tuple[Any, ...]] = [
    (1, "one", dt.date(2024, 1, 1)),
    (2, None, None),
    (3, 'th"ree', dt.date(2024, 12, 31)),
]

ORDER_ROWS = 10_000
_ORDER_STATUSES = ["NEW", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"]
_CATEGORIES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def seed(data_rows: int = 1_000_000, database: str = DEMO_DATABASE, schema: str = DEMO_SCHEMA) -> None:
    """Create (or replace) the demo tables in the shared fakesnow database.

    Tables are created through fakesnow (so DESC TABLE and INFORMATION_SCHEMA know their
    Snowflake types) and filled at the DuckDB level (so a million rows take well under a second).
    Every value derives from the row number: each process seeds identical data.
    """
    conn = fs_server.shared_fs.connect(database, schema)
    try:
        cur = conn.cursor()
        duck = conn._duck_conn  # bulk inserts bypass fakesnow's per-statement transforms
        q = f"{database}.{schema}"

        cur.execute(
            'CREATE OR REPLACE TABLE "data" (ID NUMBER(38,0), AMOUNT NUMBER(18,2), CATEGORY VARCHAR, '
            "CREATED_AT TIMESTAMP_NTZ, IS_ACTIVE BOOLEAN, EVENT_DATE DATE, SCORE FLOAT)"
        )
        categories = "[" + ", ".join(_sql_str(c) for c in _CATEGORIES) + "]"
        duck.execute(
            f"""
            INSERT INTO {q}."data"
            SELECT
                i,
                CAST((i * 7919) % 100000000 AS DECIMAL(18, 0)) * 0.01,
                CASE WHEN i % 101 = 0 THEN NULL ELSE {categories}[1 + i % {len(_CATEGORIES)}] END,
                CASE WHEN i % 997 = 0 THEN NULL
                     ELSE TIMESTAMP '2020-01-01 00:00:00' + to_microseconds(i * 37000123) END,
                i % 3 = 0,
                DATE '2020-01-01' + CAST(i % 1500 AS INTEGER),
                (i * 0.6180339887498949) % 1
            FROM range(1, ? + 1) AS t(i)
            """,
            [data_rows],
        )

        cur.execute(
            "CREATE OR REPLACE TABLE ORDERS (ORDER_ID NUMBER(38,0) PRIMARY KEY, CUSTOMER VARCHAR, "
            "AMOUNT NUMBER(12,2), STATUS VARCHAR, UPDATED_AT TIMESTAMP_NTZ(6))"
        )
        statuses = "[" + ", ".join(_sql_str(s) for s in _ORDER_STATUSES) + "]"
        duck.execute(
            f"""
            INSERT INTO {q}.ORDERS
            SELECT
                i,
                'customer_' || lpad(CAST(i % 613 AS VARCHAR), 4, '0'),
                CAST((i * 104729) % 10000000 AS DECIMAL(12, 0)) * 0.01,
                {statuses}[1 + i % {len(_ORDER_STATUSES)}],
                TIMESTAMP '2024-01-01 00:00:00' + to_microseconds(i * 60000001)
            FROM range(1, {ORDER_ROWS} + 1) AS t(i)
            """
        )

        cur.execute(
            "CREATE OR REPLACE TABLE ALL_TYPES ("
            + ", ".join(f"{name} {typ}" for name, typ in ALL_TYPES_COLUMNS)
            + ")"
        )
        json_columns = {name for name, typ in ALL_TYPES_COLUMNS if typ in ("VARIANT", "OBJECT", "ARRAY")}
        names = [name for name, _ in ALL_TYPES_COLUMNS]
        duck.executemany(
            f"INSERT INTO {q}.ALL_TYPES VALUES ({', '.join('?' for _ in names)})",
            [
                [
                    json.dumps(v) if name in json_columns and v is not None else v
                    for name, v in zip(names, row, strict=True)
                ]
                for row in ALL_TYPES_ROWS
            ],
        )

        cur.execute(
            "CREATE OR REPLACE TABLE EMPTY_TABLE (ID NUMBER(38,0), NAME VARCHAR, PRICE NUMBER(10,2), "
            "CREATED_AT TIMESTAMP_NTZ, IS_VALID BOOLEAN)"
        )

        cur.execute(
            'CREATE OR REPLACE TABLE "Mixed Case" (ID NUMBER(38,0), "Weird ""col""" VARCHAR, "lower col" DATE)'
        )
        duck.executemany(f'INSERT INTO {q}."Mixed Case" VALUES (?, ?, ?)', [list(r) for r in MIXED_CASE_ROWS])
    finally:
        conn.close()
    for table in ("data", "ORDERS", "ALL_TYPES", "EMPTY_TABLE", "Mixed Case"):
        refresh_table_stats((database, schema, table))


#: At most this many rows of each kind per change (the demo stays a demo).
ORDER_CHANGE_LIMIT = 1_000


def change_orders(inserts: int = 20, updates: int = 30, deletes: int = 10, *, database: str = DEMO_DATABASE,
                  schema: str = DEMO_SCHEMA, rng: random.Random | None = None) -> dict[str, int]:
    """Make ORDERS change as a live system's table does, so an incremental sync has work to show:
    new orders, changed orders and deleted orders, in one transaction.

    Changed and new rows get an UPDATED_AT past every earlier one (now, or a second after the
    latest if the clock is behind it), so an incremental sync on UPDATED_AT fetches them; deletes
    are found only by delete detection. Rows to change or delete are picked at random, never the
    same row for both. Returns what was done: {"inserted", "updated", "deleted"} (fewer than asked
    when the table has fewer rows).
    """
    for name, count in (("inserts", inserts), ("updates", updates), ("deletes", deletes)):
        if not 0 <= int(count) <= ORDER_CHANGE_LIMIT:
            raise ValueError(f"{name} must be between 0 and {ORDER_CHANGE_LIMIT}, not {count}")
    rng = rng or random.Random()
    table = qualified(database, schema, "ORDERS")
    duck = fs_server.shared_fs.duck_conn.cursor()
    try:
        duck.execute("BEGIN")
        ids = [row[0] for row in duck.execute(f"SELECT ORDER_ID FROM {table} ORDER BY ORDER_ID").fetchall()]
        last_id, last_change = duck.execute(f"SELECT max(ORDER_ID), max(UPDATED_AT) FROM {table}").fetchone()
        stamp = dt.datetime.now(UTC).replace(tzinfo=None)
        if last_change is not None and stamp <= last_change:
            stamp = last_change + dt.timedelta(seconds=1)
        picked = rng.sample(ids, min(int(updates) + int(deletes), len(ids)))
        updated, deleted = picked[:int(updates)], picked[int(updates):]
        statuses = " ".join(f"WHEN {_sql_str(a)} THEN {_sql_str(b)}"
                            for a, b in zip(_ORDER_STATUSES, _ORDER_STATUSES[1:], strict=False))
        duck.execute(f"UPDATE {table} SET STATUS = CASE STATUS {statuses} ELSE 'NEW' END, "
                     "AMOUNT = AMOUNT + 1, UPDATED_AT = ? WHERE list_contains(?, ORDER_ID)", [stamp, updated])
        duck.execute(f"DELETE FROM {table} WHERE list_contains(?, ORDER_ID)", [deleted])
        duck.execute(
            f"INSERT INTO {table} SELECT i, 'customer_' || lpad(CAST(i % 613 AS VARCHAR), 4, '0'), "
            "CAST((i * 104729) % 10000000 AS DECIMAL(12, 0)) * 0.01, 'NEW', ? "
            "FROM range(?, ?) AS t(i)", [stamp, (last_id or 0) + 1, (last_id or 0) + 1 + int(inserts)])
        duck.execute("COMMIT")
    except BaseException:
        duck.execute("ROLLBACK")
        raise
    finally:
        duck.close()
    refresh_table_stats((database, schema, "ORDERS"))  # LAST_ALTERED moves: a sync will not be skipped
    return {"inserted": int(inserts), "updated": len(updated), "deleted": len(deleted)}
