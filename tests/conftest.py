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


# --- the metadata database on every backend it supports ---------------------------------------

@pytest.fixture(scope="session")
def postgres_server() -> object:
    """One throwaway PostgreSQL cluster for the session (None: PostgreSQL is not installed here)."""
    from tests.integration.pg_cluster import postgres_cluster

    with postgres_cluster() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty metadata database: a SQLite file, or a new database of the session's
    PostgreSQL cluster (skipped only where PostgreSQL is not installed; CI has it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sfduck-metadata.sqlite'}"
    dsn = request.getfixturevalue("postgres_server")
    if dsn is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
    import uuid

    import psycopg

    parts = dict(item.split("=", 1) for item in str(dsn).split())
    name = f"sfduck_meta_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(str(dsn), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{parts['user']}@{parts['host']}:{parts['port']}/{name}"
