"""One place holds an error's facts; each front end words its fix in its own terms: the command line
names commands and flags, the API endpoints and fields, the dashboard pages and buttons."""

from __future__ import annotations

import pytest

from sfduck_core.cli import CLI_HINTS
from sfduck_core.errors import REMEDIES, MissingIncrementalKeyError, NotRegisteredError, SfduckError, worded
from sfduck_server.api import API_HINTS
from sfduck_ui.layout import DASHBOARD_HINTS

SURFACES = {"cli": CLI_HINTS, "api": API_HINTS, "dashboard": DASHBOARD_HINTS}
# words that belong to another surface's language
FOREIGN = {"cli": ("POST ", "/api/v1", " page", "button"), "api": ("--", "sfduck ", " page", "button"),
           "dashboard": ("--", "sfduck ", "/api/v1", "POST ")}


@pytest.mark.parametrize("surface", SURFACES)
def test_every_fix_is_worded_by_every_surface_in_its_own_terms(surface: str) -> None:
    hints = SURFACES[surface]
    assert set(hints) == set(REMEDIES)
    for remedy in REMEDIES:
        text = worded(SfduckError("Something failed.", remedy=remedy, schema="S", table="T"), hints)
        assert text.startswith("Something failed. ") and len(text) > len("Something failed. ") + 10
        assert not [w for w in FOREIGN[surface] if w in text], (surface, remedy, text)


def test_the_facts_fill_each_surfaces_words() -> None:
    exc = NotRegisteredError("SALES", "ORDERS")
    assert str(exc) == "SALES.ORDERS is not registered for syncing."
    assert worded(exc, CLI_HINTS).endswith("sfduck register SALES ORDERS")
    assert '"table_name": "ORDERS"' in worded(exc, API_HINTS)
    assert "Register page" in worded(exc, DASHBOARD_HINTS)
    assert "--incremental-key" in worded(MissingIncrementalKeyError("SALES", "ORDERS"), CLI_HINTS)


def test_an_error_without_a_fix_is_its_message_alone() -> None:
    assert worded(SfduckError("Snowflake is unreachable."), CLI_HINTS) == "Snowflake is unreachable."
    assert worded(ValueError("x"), API_HINTS) == "x"
