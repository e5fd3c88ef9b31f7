"""Exact text for every value the dashboard shows (sfduck_core.display), over generated values: a
double reads back as the same double, a decimal or a HUGEINT keeps every digit, NULL stays missing."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Context, Decimal

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sfduck_core.display import exact_table, exact_text, numeric_columns, readable_json, with_duckdb_types

HUGEINT = (-(2**127), 2**127 - 1)
UNTIMED = settings(deadline=None)  # hypothesis' per-example deadline is a timing assertion: none here
WIDE = Context(prec=80)  # Python's default context rounds to 28 digits; DECIMAL(38,s) has 38


@UNTIMED
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_double_reads_back_as_the_same_double_in_the_shortest_text(value: float) -> None:
    text = exact_text(value)
    back = float(text)
    assert (math.isnan(back) and math.isnan(value)) or (back == value and math.copysign(1, back) == math.copysign(1, value))
    assert text == repr(value)  # Python's repr is the shortest text that round-trips


@UNTIMED
@given(st.integers(min_value=HUGEINT[0], max_value=HUGEINT[1]))
def test_an_integer_keeps_every_digit(value: int) -> None:
    assert exact_text(value) == str(value) and int(exact_text(value)) == value


@st.composite
def decimals(draw: st.DrawFn) -> tuple[Decimal, int]:
    precision = draw(st.integers(1, 38))
    scale = draw(st.integers(0, precision))
    digits = draw(st.integers(-(10**precision) + 1, 10**precision - 1))
    return Decimal(digits).scaleb(-scale, WIDE), scale


@UNTIMED
@given(decimals())
def test_a_decimal_keeps_every_digit_and_its_scale_without_an_exponent(case: tuple[Decimal, int]) -> None:
    value, scale = case
    text = exact_text(value)
    assert "E" not in text.upper() and Decimal(text) == value
    assert len(text.partition(".")[2]) == scale


@st.composite
def numeric_rows(draw: st.DrawFn) -> tuple[int, list[tuple[Decimal, int, float]]]:
    """A DECIMAL(38, scale) column's scale and rows of (decimal, hugeint, double)."""
    scale = draw(st.integers(0, 38))
    decimal = st.integers(-(10**38) + 1, 10**38 - 1).map(lambda digits: Decimal(digits).scaleb(-scale, WIDE))
    rows = draw(st.lists(st.tuples(decimal, st.integers(HUGEINT[0], HUGEINT[1]), st.floats(allow_nan=False)),
                         min_size=1, max_size=5))
    return scale, rows


@settings(max_examples=40, deadline=None)
@given(numeric_rows())
def test_a_tables_numbers_arrive_from_duckdb_as_their_exact_text(case: tuple[int, list]) -> None:
    """Through DuckDB and Arrow as the dashboard reads them: DECIMAL(38,s), HUGEINT, DOUBLE."""
    scale, rows = case
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t (d DECIMAL(38, {scale}), h HUGEINT, f DOUBLE)")
        con.executemany(f"INSERT INTO t VALUES (?::DECIMAL(38, {scale}), ?::HUGEINT, ?)",
                        [[format(d, "f"), str(h), f] for d, h, f in rows])
        stored = con.execute("SELECT d, h, f FROM t").fetchall()
        table = con.execute("SELECT d, h, f FROM t").to_arrow_table()
    shown = exact_table(table).to_pylist()
    for (d, h, f), row, (given_d, _, _) in zip(stored, shown, rows, strict=True):
        assert d == given_d  # DuckDB stored the generated value itself: the comparison below is not vacuous
        assert Decimal(row["d"]) == d and len(row["d"].partition(".")[2]) == scale and "E" not in row["d"]
        assert row["h"] == str(h) and float(row["f"]) == f and row["f"] == repr(f)
    assert numeric_columns(table) == ["d", "h", "f"]


def test_null_is_a_missing_value_in_every_column_and_never_text() -> None:
    with duckdb.connect() as con:
        table = con.execute(
            "SELECT NULL::HUGEINT a, NULL::DECIMAL(38,10) b, NULL::DOUBLE c, NULL::VARCHAR d, NULL::BLOB e, "
            "NULL::BOOLEAN f, NULL::DATE g, NULL::TIMESTAMPTZ h, NULL::JSON i, NULL::INTEGER[] j, "
            "NULL::INTERVAL k, NULL::TIME_NS l").to_arrow_table()
    shown = exact_table(table)
    assert all(field.type == pa.string() for field in shown.schema)
    assert shown.to_pylist() == [dict.fromkeys(table.column_names)]


def test_the_other_types_read_as_a_person_expects() -> None:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'America/New_York'")  # an instant is still shown in UTC
        table = con.execute(
            "SELECT '\\x00\\xFF\\x10'::BLOB bin, ''::BLOB empty, true AS yes, false AS no, 0.1::FLOAT AS flt, "
            "TIMESTAMPTZ '2024-02-29 07:04:56.123456+00' ltz, TIMESTAMP_NS '2262-04-10 23:59:59.999999999' ns, "
            "TIME_NS '23:59:59.123456789' tns, 'infinity'::DATE inf, DATE '0001-01-01' first_day, "
            "'{\"k\":[1,2.5,\"x\",null,true],\"n\":12345678901234567890}'::JSON js, [1, 2] li, "
            "INTERVAL '1 day 2 hours' iv").to_arrow_table()
    shown = exact_table(with_duckdb_types(table, {"js": "JSON"})).to_pylist()[0]
    assert shown == {
        "bin": "0x00FF10", "empty": "0x", "yes": "true", "no": "false", "flt": "0.1",
        "ltz": "2024-02-29 07:04:56.123456+00", "ns": "2262-04-10 23:59:59.999999999",
        "tns": "23:59:59.123456789", "inf": "infinity", "first_day": "0001-01-01",
        "js": '{"k": [1, 2.5, "x", null, true], "n": 12345678901234567890}', "li": "[1, 2]",
        "iv": "1 day 02:00:00"}


@UNTIMED
@given(st.datetimes(timezones=st.just(dt.UTC)))
def test_python_instants_read_like_duckdb_text(value: dt.datetime) -> None:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        expected = con.execute("SELECT CAST(?::TIMESTAMPTZ AS VARCHAR)", [value]).fetchone()[0]
    assert exact_text(value) == expected


def test_json_that_is_not_json_is_shown_as_it_is() -> None:
    assert readable_json("{not json") == "{not json"
    assert json.loads(readable_json('{"a" :  [1,\n 2]}')) == {"a": [1, 2]}
