"""The exact type map: no Snowflake value may lose digits or range on its way into DuckDB."""

from __future__ import annotations

import pytest

from sfduck_core.typemap import Encoding, SnowflakeType, map_type


@pytest.mark.parametrize(
    ("snowflake", "duckdb"),
    [
        ("NUMBER(38,0)", "HUGEINT"),
        ("NUMBER(19,0)", "HUGEINT"),
        ("NUMBER(18,0)", "BIGINT"),
        ("NUMBER(9,0)", "BIGINT"),
        ("NUMBER(10,2)", "DECIMAL(10,2)"),
        ("NUMBER(38,10)", "DECIMAL(38,10)"),
        ("NUMBER", "HUGEINT"),
        ("DECIMAL(12, 4)", "DECIMAL(12,4)"),
        ("INT", "HUGEINT"),
        ("FLOAT", "DOUBLE"),
        ("DOUBLE PRECISION", "DOUBLE"),
        ("VARCHAR(16777216)", "VARCHAR"),
        ("CHAR(5)", "VARCHAR"),
        ("TEXT", "VARCHAR"),
        ("BINARY(8388608)", "BLOB"),
        ("BOOLEAN", "BOOLEAN"),
        ("DATE", "DATE"),
        ("TIME(9)", "TIME_NS"),
        ("TIME(6)", "TIME"),
        ("TIME(0)", "TIME"),
        ("TIMESTAMP_NTZ(9)", "TIMESTAMP_NS"),
        ("TIMESTAMP_NTZ(6)", "TIMESTAMP"),
        ("TIMESTAMP_NTZ(3)", "TIMESTAMP"),
        ("TIMESTAMP_LTZ(9)", "TIMESTAMPTZ"),
        ("TIMESTAMP_TZ(3)", "TIMESTAMPTZ"),
        ("VARIANT", "JSON"),
        ("OBJECT", "JSON"),
        ("ARRAY", "JSON"),
        ("GEOGRAPHY", "VARCHAR"),
        ("VECTOR(FLOAT, 256)", "FLOAT[256]"),
        ("VECTOR(INT, 3)", "INTEGER[3]"),
    ],
)
def test_every_snowflake_type_maps_to_a_lossless_duckdb_type(snowflake: str, duckdb: str) -> None:
    mapping = map_type(snowflake)
    assert mapping.duckdb_type == duckdb
    assert mapping.known


def test_number_never_becomes_double_as_the_spec_had_it() -> None:
    assert "DOUBLE" not in {map_type(f"NUMBER({p},{s})").duckdb_type for p in range(1, 39) for s in range(0, p)}


def test_unknown_type_lands_as_text_and_is_flagged() -> None:
    mapping = map_type("SOME_FUTURE_TYPE(3)")
    assert (mapping.duckdb_type, mapping.encoding, mapping.known) == ("VARCHAR", Encoding.TEXT, False)


def test_timestamps_with_zones_are_carried_as_utc_instants() -> None:
    assert map_type("TIMESTAMP_TZ(9)").encoding is Encoding.EPOCH_US_UTC
    assert map_type("TIMESTAMP_LTZ(9)").encoding is Encoding.EPOCH_US_UTC


def test_parse_keeps_parameters() -> None:
    t = SnowflakeType.parse("number( 12 , 3 )")
    assert (t.name, t.params, str(t)) == ("NUMBER", ("12", "3"), "NUMBER(12,3)")


def test_names_that_duckdb_would_merge_are_found() -> None:
    """Issue 9 item 4 (columns): the emulator, DuckDB inside, cannot even create such a table."""
    from sfduck_core.sqlident import case_collisions, local_name_key

    assert case_collisions(["id", "ID", "Id", "name", "Ünï", "ünï"]) == [["id", "ID", "Id"]]
    assert local_name_key('Weird "col"') == 'weird "col"' and local_name_key("É") == "É"
    assert case_collisions(["a", "b"]) == []
