"""Every test is marked with its kind, taken from its folder, so that `pytest -m "not browser"`
and `pytest tests/unit` both work. Fixtures live in each kind's own conftest.py; nothing here
starts an emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration", "ui", "browser")


@pytest.hookimpl(tryfirst=True)  # before -m selects: the markers must already be there
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
        if parts and parts[0] in KINDS:
            item.add_marker(parts[0])
