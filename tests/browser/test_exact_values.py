"""Preview shows exactly what the DuckDB file holds, read from the grid a person sees (chromium).

The demo's ALL_TYPES table (HUGEINT extremes, DECIMAL(38,10), doubles from 1e-300 to the largest,
NULL in every column, binary, timestamps with a zone, JSON) is synced through the API, its first
rows are read from Preview's grid cell by cell (Playwright sees glide's accessible `gridcell`s, only
for the cells in view: the grid is scrolled until every column was seen), and each cell is compared
with the value DuckDB reads from the file once the server has stopped.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from pathlib import Path

import duckdb
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_browser import (
    SCHEMA,
    api_start_sync,
    api_wait_for_end,
    browser,
    choose,
    go,
    log_in,
    settled,
    shot,
    streamlit_server,
)

__all__ = ["browser"]  # the fixture, re-exported for pytest

TABLE = "ALL_TYPES"
GRID = '[data-testid="stDataFrame"]'


def api_register(url: str, token: str, table: str) -> None:
    body = json.dumps({"schema_name": SCHEMA, "table_name": table}).encode()
    request = urllib.request.Request(f"{url}/api/v1/sync/tables/register", data=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200


def api_token(url: str) -> str:
    form = b"username=admin&password=admin"
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/auth/token", data=form), timeout=30) as r:
        return json.load(r)["access_token"]


_CELLS_JS = """grid => Array.from(grid.querySelectorAll('[role="row"]')).flatMap(row =>
    Array.from(row.querySelectorAll('[role="gridcell"], [role="columnheader"]')).map(cell =>
        [Number(row.getAttribute('aria-rowindex')), Number(cell.getAttribute('aria-colindex')), cell.textContent]))"""
_LAST_COLUMN_JS = """grid => Math.max(0, ...Array.from(grid.querySelectorAll('[role="columnheader"]'))
    .map(cell => Number(cell.getAttribute('aria-colindex'))))"""
_SCROLL_JS = """grid => {
    const scroller = grid.querySelector('.dvn-scroller');
    const before = scroller.scrollLeft;
    scroller.scrollLeft = before + scroller.clientWidth / 2;
    return scroller.scrollLeft > before;
}"""


def grid_cells(page: Page, grid_index: int = 0) -> dict[tuple[int, int], str]:
    """Every cell of a grid as {(row, column): text}, 1-based as aria numbers them (row 1: the
    header). Glide renders accessible cells only for the columns in view, so until every column
    (its `aria-colcount`) was seen, the grid's scroller moves right half a view and the test waits
    for a column further right to appear; cells are collected at each stop."""
    grid = page.locator(GRID).nth(grid_index)
    grid.scroll_into_view_if_needed()
    count = int(grid.locator('[role="grid"]').get_attribute("aria-colcount"))
    cells: dict[tuple[int, int], str] = {}
    while True:
        cells.update({(row, col): text for row, col, text in grid.evaluate(_CELLS_JS)})
        if {col for _, col in cells} >= set(range(1, count + 1)):
            return cells
        last = grid.evaluate(_LAST_COLUMN_JS)
        assert grid.evaluate(_SCROLL_JS), f"scrolled to the end, yet saw columns {sorted({c for _, c in cells})}"
        page.wait_for_function(f"([grid, last]) => ({_LAST_COLUMN_JS})(grid) > last",
                               arg=[grid.element_handle(), last])


def as_rows(cells: dict[tuple[int, int], str]) -> tuple[list[str], list[list[str]]]:
    rows = sorted({r for r, _ in cells})
    columns = sorted({c for _, c in cells})
    table = [[cells.get((r, c)) for c in columns] for r in rows]
    return table[0], table[1:]


def expected_matches(kind: str, stored: object, duck_text: str | None, shown: str) -> bool:
    """The shown text is the stored value: exact digits, the same double, DuckDB's own text for
    dates and times, hex for binary, the same JSON, and NULL the one missing value (no text)."""
    if stored is None:
        return shown == ""
    if kind in ("HUGEINT", "BIGINT", "INTEGER"):
        return shown == str(stored)
    if kind.startswith("DECIMAL"):
        scale = int(kind.rstrip(")").split(",")[1])
        return Decimal(shown) == stored and len(shown.partition(".")[2]) == scale and "E" not in shown.upper()
    if kind == "DOUBLE":
        return float(shown) == stored and shown == repr(stored)
    if kind == "BLOB":
        return shown == "0x" + bytes(stored).hex().upper()
    if kind == "BOOLEAN":
        return shown == ("true" if stored else "false")
    if kind == "JSON":
        return json.loads(shown) == json.loads(stored)
    if kind == "VARCHAR":
        return shown == stored
    return shown == duck_text  # dates, times and timestamps: as DuckDB writes them (instants in UTC)


def test_preview_shows_every_value_of_all_types_exactly(browser: Browser, tmp_path: Path) -> None:
    with streamlit_server(tmp_path, "exact") as url:
        token = api_token(url)
        api_register(url, token, TABLE)
        token, sync_id = api_start_sync(url, TABLE)
        assert api_wait_for_end(url, token, sync_id)["status"] == "completed"

        # wide enough that the grid shows many columns at once; the rest are scrolled into view
        context = browser.new_context(viewport={"width": 2400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        log_in(page, "admin", "admin")
        page.get_by_role("heading", name="Board", exact=True).wait_for()
        settled(page)
        go(page, "Preview")
        choose(page, "Synced table", f"{SCHEMA}.{TABLE}")
        settled(page)
        expect(page.locator(GRID).first).to_be_visible()
        shot(page, "exact_values_preview")
        header, shown = as_rows(grid_cells(page))
        context.close()

    db = duckdb.connect(str(tmp_path / "sfduck.duckdb"), read_only=True)
    try:
        db.execute("SET TimeZone = 'UTC'")
        kinds = dict(db.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                                "AND table_name = ? ORDER BY column_index", [SCHEMA, TABLE]).fetchall())
        names = list(kinds)
        quoted = ", ".join(f'"{n}"' for n in names)
        texts = ", ".join(f'CAST("{n}" AS VARCHAR)' for n in names)
        stored = db.execute(f'SELECT {quoted} FROM "{SCHEMA}"."{TABLE}" ORDER BY "ID"').fetchall()
        duck_text = db.execute(f'SELECT {texts} FROM "{SCHEMA}"."{TABLE}" ORDER BY "ID"').fetchall()
    finally:
        db.close()

    assert header == names, header
    assert len(shown) == len(stored) == 5
    by_id = {row[0]: row for row in shown}
    assert sorted(by_id) == sorted(str(row[0]) for row in stored)
    mismatches = [(name, row[0], kinds[name], value, cells[i])
                  for row, texts_row in zip(stored, duck_text, strict=True)
                  for cells in [by_id[str(row[0])]]
                  for i, (name, value) in enumerate(zip(names, row, strict=True))
                  if not expected_matches(kinds[name], value, texts_row[i], cells[i])]
    assert not mismatches, mismatches
    flat = [cell for row in shown for cell in row]
    assert "9223372036854775807" in flat and "9999999999999999999999999999.9999999999" in flat and "0.1" in flat
    assert not {"None", "nan", "NaN", "NaT", "<NA>"} & set(flat)
