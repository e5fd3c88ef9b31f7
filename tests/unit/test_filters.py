"""`--where` filters: hostile input is refused offline, good input is normalised and really runs.

Run from the repository root (`python -m pytest tests/test_filters.py`) so `sfduck_core` imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import duckdb
import pytest

from sfduck_core.errors import UnsafeFilterError
from sfduck_core.filters import ALLOWED_FUNCTIONS, MAX_FILTER_LENGTH, SafeFilter, validate_filter

COLUMNS = (
    "ID", "AMOUNT", "NAME", "Mixed Case", "CREATED_AT", "ORDER_DATE", "ACTIVE", "DAY_TEXT", "STAMP_TEXT"
)

# The rows every good filter is run against, so a wrong rewrite shows up as wrong rows.
TABLE_DDL = """
    CREATE TABLE t (
        "ID" INTEGER, "AMOUNT" DECIMAL(10, 2), "NAME" VARCHAR, "Mixed Case" VARCHAR,
        "CREATED_AT" TIMESTAMP, "ORDER_DATE" DATE, "ACTIVE" BOOLEAN, "DAY_TEXT" VARCHAR, "STAMP_TEXT" VARCHAR
    )
"""
TABLE_ROWS = [
    (1, 10.00, "alice", "x", "2024-01-15 10:00:00", "2024-01-15", True, "15/01/2024", "2024-01-15 10:00:00"),
    (2, 3.50, "Bob", "y", "2024-02-01 00:00:00", "2024-02-01", False, "01/02/2024", "2024-02-01 00:00:01"),
    (3, None, None, "x", "2023-12-31 23:59:00", "2023-12-31", True, "01/01/2024", "2023-12-31 23:59:00"),
    (4, 250.00, "o'brien", None, "2024-03-10 12:00:00", "2024-03-10", None, None, None),
    (5, -1.00, "a%b", "z", "2024-01-31 08:00:00", "2024-01-31", False, "31/01/2024", "2024-01-31 08:00:00"),
]
ALL_IDS = {1, 2, 3, 4, 5}

# (user text, the exact message fragment that must explain the refusal)
HOSTILE: list[tuple[str, str]] = [
    # several statements
    ("id > 1; DROP TABLE x", "';' at character 7"),
    ("id > 1;", "';' at character 7"),
    ('"we;ird" = 1', "';' inside the quoted name"),
    # comments
    ("id > 1 -- and the rest", "comment ('--' at character 8)"),
    ("id > 1 /* hidden */", "comment ('/*' at character 8)"),
    ("id > 1 // snowflake style", "comment ('//' at character 8)"),
    ("/**/id > 1", "comment ('/*' at character 1)"),
    ("-- only a comment", "only a comment"),
    ("name = 'x' /* never closed", "comment '/*' at character 12 that is never closed"),
    # subqueries, set operations, CTEs
    ("id = (SELECT MAX(id) FROM t)", "Subqueries are not allowed"),
    ("id IN (SELECT id FROM other)", "Subqueries are not allowed"),
    ("EXISTS (SELECT 1 FROM information_schema.tables)", "EXISTS (subquery) is not allowed"),
    ("id > 1 UNION SELECT 1", "UNION at character 8"),
    ("id > 1 INTERSECT SELECT 1", "INTERSECT at character 8"),
    ("WITH c AS (SELECT 1) SELECT * FROM c", "starts with WITH"),
    ("SELECT * FROM t", "starts with SELECT"),
    ("id = 1 ORDER BY id", "ORDER BY clause at character 8"),
    ("id = 1 WHERE name = 'x'", "WHERE at character 8"),
    # statements passed off as filters
    ("DROP TABLE x", "starts with DROP"),
    ("DELETE FROM t", "starts with DELETE"),
    ("INSERT INTO t VALUES (1)", "starts with INSERT"),
    ("UPDATE t SET id = 1", "starts with UPDATE"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "starts with MERGE"),
    ("CREATE TABLE x (a INT)", "starts with CREATE"),
    ("ALTER TABLE t DROP COLUMN id", "starts with ALTER"),
    ("GRANT SELECT ON TABLE t TO ROLE r", "starts with GRANT"),
    ("USE DATABASE other", "starts with USE"),
    ("SET x = 1", "starts with SET"),
    ("CALL evil()", "starts with CALL"),
    ("COPY INTO t FROM @stage", "stage (@stage) at character 18"),
    ("PUT file:///etc/passwd @stage", "stage (@stage) at character 24"),
    # functions outside the allow-list
    ("SYSTEM$WAIT(10)", "SYSTEM$WAIT() is not allowed"),
    ("SYSTEM$CANCEL_ALL_QUERIES() = 'x'", "SYSTEM$CANCEL_ALL_QUERIES() is not allowed"),
    ("read_csv('/etc/passwd') IS NOT NULL", "The function READ_CSV() is not allowed"),
    ("read_parquet('s3://bucket/x') IS NULL", "The function READ_PARQUET() is not allowed"),
    ("glob('/etc/*') = 1", "The function GLOB() at character 1 is not allowed"),
    ("getenv('HOME') = 'x'", "The function GETENV() is not allowed"),
    ("RANDOM() > 0.5", "The function RANDOM() is not allowed"),
    ("UUID_STRING() = 'x'", "The function UUID_STRING() is not allowed"),
    ("SEQ4() > 1", "The function SEQ4() is not allowed"),
    ("CURRENT_USER() = 'ME'", "The function CURRENT_USER() is not allowed"),
    ("id = IDENTIFIER('ID')", "The function IDENTIFIER() is not allowed"),
    ("GENERATOR(ROWCOUNT => 10) = 1", "The function GENERATOR() is not allowed"),
    ("COUNT(*) > 1", "aggregate function COUNT() is not allowed"),
    ("SUM(amount) > 100", "aggregate function SUM() is not allowed"),
    ("ROW_NUMBER() OVER (ORDER BY id) = 1", "Window functions are not allowed"),
    ("LAG(amount) OVER (ORDER BY id) < amount", "Window functions are not allowed"),
    # columns
    ("nope = 1", "Unknown column nope."),
    ('"amount" = 1', 'Unknown column "amount"'),
    ('"amount" = 1', 'Did you mean "AMOUNT"?'),
    ("t.id = 1", "The column reference t.id is qualified"),
    ("db.sch.t.id = 1", "is qualified"),
    ("*", "`*` is not allowed"),
    ("name:field = 'x'", "Path and element access"),
    ("name[0] = 'x'", "Path and element access"),
    # variables, placeholders, stages
    ("$var = 1", "variable $var at character 1"),
    ("id = $1", "variable $1 at character 6"),
    ("id = ?", "placeholder '?' at character 6"),
    ("id = :1", "placeholder :1"),
    ("id = :name", "placeholder :name"),
    ("name = @my_stage", "stage (@my_stage) at character 8"),
    # broken syntax
    ("name = 'abc", "string literal (') starting at character 8 is never closed"),
    ('name = "abc', 'quoted name (") starting at character 8 is never closed'),
    ("(id = 1", "the '(' at character 1 is never closed"),
    ("id = 1)", "the ')' at character 7 has no matching '('"),
    ("id = 1 AND", "incomplete expression at 'AND' (character 8)"),
    ("id = 1 b", "unexpected token at 'b' (character 8)"),
    # not a condition
    ("1", "The filter `1` is a number, not a condition"),
    ("'abc'", "The filter `'abc'` is a text literal, not a condition"),
    ("NULL", "is NULL, not a condition"),
    ("UPPER(name)", "is a function value, not a condition"),
    ("amount + 1", "is an arithmetic expression, not a condition"),
    ("id > 1 AND 5", "An operand of AND, `5`, is a number"),
    ("IFF(id > 1, 1, 0)", "A result of IFF, `1`, is a number"),
    # empty, oversized, odd characters
    ("", "The filter is empty."),
    ("   \n\t", "The filter is empty."),
    ("name = '" + "x" * MAX_FILTER_LENGTH + "'", f"the limit is {MAX_FILTER_LENGTH}"),
    ("id = 1\x00", "control character (U+0000) at character 7"),
    ("name = '\\0'", "contains the control character U+0000"),
    ("NOT " * 990 + "id = 1", "nested too deeply"),
    ("(" * 65 + "id = 1" + ")" * 65, "more than 64 levels deep"),
    ("id IN (1, id)", "IN lists may only contain literal values"),
    ("id = 0x10", "(hexstring) is not allowed"),
]

# (user text, normalised Snowflake SQL, ids of TABLE_ROWS it selects)
GOOD: list[tuple[str, str, set[int]]] = [
    ("amount > 5", '"AMOUNT" > 5', {1, 4}),
    ("Amount >= 3.5 AND active", '"AMOUNT" >= 3.5 AND "ACTIVE"', {1}),
    ("AMOUNT > 5", '"AMOUNT" > 5', {1, 4}),
    ('"AMOUNT" > 5', '"AMOUNT" > 5', {1, 4}),
    ("\"Mixed Case\" = 'x'", "\"Mixed Case\" = 'x'", {1, 3}),
    ("order_date >= '2024-02-01'::date", "\"ORDER_DATE\" >= CAST('2024-02-01' AS DATE)", {2, 4}),
    ("order_date >= DATE '2024-02-01'", "\"ORDER_DATE\" >= CAST('2024-02-01' AS DATE)", {2, 4}),
    ("id IN (1, 3, 5)", '"ID" IN (1, 3, 5)', {1, 3, 5}),
    ("id NOT IN (1, 2)", 'NOT "ID" IN (1, 2)', {3, 4, 5}),
    ("amount BETWEEN 0 AND 10", '"AMOUNT" BETWEEN 0 AND 10', {1, 2}),
    ("name IS NULL", '"NAME" IS NULL', {3}),
    ("name IS NOT NULL", 'NOT "NAME" IS NULL', {1, 2, 4, 5}),
    ("name LIKE 'a%'", "\"NAME\" LIKE 'a%'", {1, 5}),
    ("name ILIKE 'b%'", "\"NAME\" ILIKE 'b%'", {2}),
    ("name LIKE 'a!%%' ESCAPE '!'", "\"NAME\" LIKE 'a!%%' ESCAPE '!'", {5}),
    ("name = 'o''brien'", "\"NAME\" = 'o\\'brien'", {4}),
    ("name = $$o'brien$$", "\"NAME\" = 'o\\'brien'", {4}),
    ("name = '--not a comment; /* either */'", "\"NAME\" = '--not a comment; /* either */'", set()),
    ("UPPER(name) = 'BOB'", "UPPER(\"NAME\") = 'BOB'", {2}),
    ("LENGTH(TRIM(name)) = 3", 'LENGTH(TRIM("NAME")) = 3', {2, 5}),
    ("COALESCE(amount, 0) = 0", 'COALESCE("AMOUNT", 0) = 0', {3}),
    ("NVL(name, 'none') = 'none'", "COALESCE(\"NAME\", 'none') = 'none'", {3}),
    ("IFF(amount > 100, TRUE, FALSE)", 'IFF("AMOUNT" > 100, TRUE, FALSE)', {4}),
    ("ABS(amount) = 1", 'ABS("AMOUNT") = 1', {5}),
    ("ROUND(amount) = 4 OR FLOOR(amount) = 10", 'ROUND("AMOUNT") = 4 OR FLOOR("AMOUNT") = 10', {1, 2}),
    ("STARTSWITH(name, 'a')", "STARTSWITH(\"NAME\", 'a')", {1, 5}),
    ("CONTAINS(name, 'ob')", "CONTAINS(\"NAME\", 'ob')", {2}),
    ("SUBSTR(name, 2, 2) = 'li'", "SUBSTRING(\"NAME\", 2, 2) = 'li'", {1}),
    ("id::varchar = '4'", "CAST(\"ID\" AS VARCHAR) = '4'", {4}),
    ("TRY_CAST(name AS INT) IS NULL", 'TRY_CAST("NAME" AS INT) IS NULL', ALL_IDS),
    (
        "DATE_TRUNC('month', created_at) = '2024-01-01'",
        "DATE_TRUNC('MONTH', \"CREATED_AT\") = '2024-01-01'",
        {1, 5},
    ),
    ("DATEADD(day, 1, order_date) = '2024-02-01'", "DATEADD(DAY, 1, \"ORDER_DATE\") = '2024-02-01'", {5}),
    (
        "DATEDIFF(day, order_date, '2024-02-01') = 1",
        "DATEDIFF(DAY, \"ORDER_DATE\", '2024-02-01') = 1",
        {5},
    ),
    ("YEAR(created_at) = 2023", 'YEAR("CREATED_AT") = 2023', {3}),
    (
        "MONTH(order_date) = 1 AND DAY(order_date) > 20",
        'MONTH("ORDER_DATE") = 1 AND DAY("ORDER_DATE") > 20',
        {5},
    ),
    (
        "order_date = TO_DATE('15/01/2024', 'DD/MM/YYYY')",
        "\"ORDER_DATE\" = TO_DATE('15/01/2024', 'DD/mm/yyyy')",
        {1},
    ),
    (
        "TO_DATE(day_text, 'DD/MM/YYYY') = order_date",
        "TO_DATE(\"DAY_TEXT\", 'DD/mm/yyyy') = \"ORDER_DATE\"",
        {1, 2, 5},
    ),
    ("TO_TIMESTAMP(stamp_text) = created_at", 'TO_TIMESTAMP("STAMP_TEXT") = "CREATED_AT"', {1, 3, 5}),
    (
        "created_at = TO_TIMESTAMP('2024-01-15 10:00:00')",
        "\"CREATED_AT\" = CAST('2024-01-15 10:00:00' AS TIMESTAMP)",
        {1},
    ),
    ("created_at < CURRENT_TIMESTAMP", '"CREATED_AT" < CURRENT_TIMESTAMP()', ALL_IDS),
    ("order_date <= CURRENT_DATE", '"ORDER_DATE" <= CURRENT_DATE', ALL_IDS),
    ("(id = 1 OR id = 2) AND NOT active", '("ID" = 1 OR "ID" = 2) AND NOT "ACTIVE"', {2}),
    ("active IS NULL", '"ACTIVE" IS NULL', {4}),
    ("TRUE", "TRUE", ALL_IDS),
    ("amount * 2 > 400 OR id = 1", '"AMOUNT" * 2 > 400 OR "ID" = 1', {1, 4}),
    ("NOT (id = 1 OR id = 2)", 'NOT ("ID" = 1 OR "ID" = 2)', {3, 4, 5}),
]


@pytest.fixture(scope="module")
def table() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    con.execute(TABLE_DDL)
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", TABLE_ROWS)
    yield con
    con.close()


def selected_ids(con: duckdb.DuckDBPyConnection, predicate: str) -> set[int]:
    # The relational API takes the predicate as an expression, exactly as a WHERE clause would.
    rows = con.table("t").filter(predicate).project('"ID"').fetchall()
    return {row[0] for row in rows}


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=[repr(t[:40]) for t, _ in HOSTILE])
def test_hostile_filters_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(UnsafeFilterError, match=re.escape(reason)):
        validate_filter(text, COLUMNS)


def test_hostile_list_is_broad() -> None:
    assert len(HOSTILE) >= 20
    assert len(GOOD) >= 10


@pytest.mark.parametrize(("text", "expected_sql", "expected_ids"), GOOD, ids=[t[:40] for t, _, _ in GOOD])
def test_good_filters_are_normalised(text: str, expected_sql: str, expected_ids: set[int]) -> None:
    safe = validate_filter(text, COLUMNS)
    assert safe.original == text
    assert safe.sql == expected_sql
    assert set(safe.columns) <= set(COLUMNS)
    # Normalising is idempotent: the output is itself an acceptable filter that comes back unchanged.
    assert validate_filter(safe.sql, COLUMNS).sql == safe.sql


@pytest.mark.parametrize(("text", "expected_sql", "expected_ids"), GOOD, ids=[t[:40] for t, _, _ in GOOD])
def test_good_filters_select_the_right_rows_in_duckdb(
    table: duckdb.DuckDBPyConnection, text: str, expected_sql: str, expected_ids: set[int]
) -> None:
    safe = validate_filter(text, COLUMNS)
    assert selected_ids(table, safe.duckdb_sql()) == expected_ids


@pytest.fixture(scope="module")
def snowflake_cursor() -> Iterator[object]:
    """fakesnow speaks Snowflake SQL (it is the closest thing to Snowflake available offline)."""
    fakesnow = pytest.importorskip("fakesnow")
    connector = pytest.importorskip("snowflake.connector")
    with fakesnow.patch():
        con = connector.connect(database="db", schema="s")
        cur = con.cursor()
        cur.execute(TABLE_DDL.replace("DECIMAL", "NUMBER"))
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", TABLE_ROWS)
        yield cur
        con.close()


@pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result")
@pytest.mark.parametrize(("text", "expected_sql", "expected_ids"), GOOD, ids=[t[:40] for t, _, _ in GOOD])
def test_good_filters_select_the_right_rows_in_snowflake_dialect(
    snowflake_cursor: object, text: str, expected_sql: str, expected_ids: set[int]
) -> None:
    safe = validate_filter(text, COLUMNS)
    # Joined rather than formatted: the predicate is SafeFilter output, which is what is under test.
    snowflake_cursor.execute(" ".join(['SELECT "ID" FROM t WHERE', safe.sql]))  # type: ignore[attr-defined]
    assert {row[0] for row in snowflake_cursor.fetchall()} == expected_ids  # type: ignore[attr-defined]


def test_columns_are_real_names_in_order_of_first_use() -> None:
    safe = validate_filter("name = 'x' OR amount > 1 OR NAME IS NULL OR \"Mixed Case\" = 'y'", COLUMNS)
    assert safe.columns == ("NAME", "AMOUNT", "Mixed Case")
    assert validate_filter("TRUE", COLUMNS).columns == ()


@pytest.mark.parametrize(
    ("text", "expected_duckdb"),
    [
        ("STARTSWITH(name, 'a')", "STARTS_WITH(\"NAME\", 'a')"),
        ("DATEADD(day, 1, order_date) = '2024-02-01'", "\"ORDER_DATE\" + INTERVAL 1 DAY = '2024-02-01'"),
        ("name = 'o''brien'", "\"NAME\" = 'o''brien'"),
        ("IFF(amount > 100, TRUE, FALSE)", 'CASE WHEN "AMOUNT" > 100 THEN TRUE ELSE FALSE END'),
        (
            "order_date = TO_DATE('15/01/2024', 'DD/MM/YYYY')",
            "\"ORDER_DATE\" = CAST(STRPTIME('15/01/2024', '%d/%m/%Y') AS DATE)",
        ),
        ("TO_TIMESTAMP(name) IS NULL", 'CAST("NAME" AS TIMESTAMP) IS NULL'),
    ],
)
def test_duckdb_rendering(text: str, expected_duckdb: str) -> None:
    assert validate_filter(text, COLUMNS).duckdb_sql() == expected_duckdb


def test_unquoted_names_ignore_case_but_not_ambiguity() -> None:
    columns = ["Total", "TOTAL", "lower_only"]
    assert validate_filter("LOWER_ONLY > 1", columns).sql == '"lower_only" > 1'
    assert validate_filter('"Total" > 1', columns).sql == '"Total" > 1'
    assert validate_filter('"TOTAL" > 1', columns).sql == '"TOTAL" > 1'
    with pytest.raises(UnsafeFilterError, match=re.escape('total is ambiguous: it matches "Total", "TOTAL"')):
        validate_filter("total > 1", columns)


def test_column_names_needing_escapes_are_quoted_like_quote_ident() -> None:
    columns = ['odd"name', "has space"]
    safe = validate_filter('"odd""name" = 1 AND "has space" IS NULL', columns)
    assert safe.sql == '"odd""name" = 1 AND "has space" IS NULL'
    assert safe.columns == ('odd"name', "has space")
    con = duckdb.connect(":memory:")
    con.execute('CREATE TABLE t ("odd""name" INTEGER, "has space" VARCHAR, "ID" INTEGER)')
    con.execute("INSERT INTO t VALUES (1, NULL, 7), (2, NULL, 8)")
    assert selected_ids(con, safe.duckdb_sql()) == {7}


def test_strings_with_backslashes_and_quotes_survive_both_dialects(table: duckdb.DuckDBPyConnection) -> None:
    # A value ending in a backslash is the classic way to make a naive re-quoter leak the closing quote.
    safe = validate_filter("name = 'x\\\\' OR name = 'o''brien'", COLUMNS)
    assert safe.sql == "\"NAME\" = 'x\\\\' OR \"NAME\" = 'o\\'brien'"
    assert safe.duckdb_sql() == "\"NAME\" = 'x\\' OR \"NAME\" = 'o''brien'"
    assert selected_ids(table, safe.duckdb_sql()) == {4}


def test_hand_built_safe_filter_is_checked_again_before_duckdb() -> None:
    forged = SafeFilter(original="x", sql="1 = 1; DROP TABLE t", columns=("ID",))
    with pytest.raises(UnsafeFilterError, match="';'"):
        forged.duckdb_sql()
    forged = SafeFilter(original="x", sql="read_csv('/etc/passwd') IS NOT NULL", columns=())
    with pytest.raises(UnsafeFilterError, match=re.escape("READ_CSV()")):
        forged.duckdb_sql()


def test_columns_must_be_a_list_of_names() -> None:
    with pytest.raises(TypeError):
        validate_filter("id = 1", "ID")  # type: ignore[arg-type]


def test_allowed_functions_are_documented() -> None:
    for name in ("UPPER", "NVL", "IFF", "DATEADD", "TO_DATE", "TO_TIMESTAMP", "CONTAINS", "CURRENT_DATE"):
        assert name in ALLOWED_FUNCTIONS
    for name in ("RANDOM", "UUID_STRING", "READ_CSV", "GETENV", "COUNT"):
        assert name not in ALLOWED_FUNCTIONS
