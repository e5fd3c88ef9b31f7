"""The metadata database's engine: where sfduck keeps registrations, jobs, statuses, schedules and the
audit log, apart from the data so that an analyst holding the DuckDB file (or a long sync) never
stops the API or the dashboard.

By default a SQLite file beside the data (zero configuration, WAL so readers never wait for a
writer, a busy timeout so writers queue); for a team, PostgreSQL (`SFDUCK_METADATA_URL`, e.g.
`postgresql+psycopg://sfduck@db/sfduck`). The schema is brought up to date by Alembic, run in code
when a database is first opened in a process.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url

from sfduck_core.errors import ConfigError, StoreBusyError
from sfduck_core.files import create_private_file
from sfduck_core.metadata.records import to_json

METADATA_FILE = "sfduck-metadata.sqlite"
SQLITE_BUSY_TIMEOUT_S = 30.0
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Engines of this process, most recently opened last: a few (a test run opens hundreds of files).
# An engine dropped here is disposed (its idle connections closed); one still held by a caller keeps
# working, it opens new connections as needed.
_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_ENGINES_KEPT = 8
_engines_lock = threading.Lock()


def default_metadata_url(folder: str | os.PathLike[str]) -> str:
    """The SQLite file in `folder` (the DuckDB file's folder, or the data folder of a lake)."""
    return f"sqlite:///{Path(folder).resolve() / METADATA_FILE}"


def redact_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: say nothing of it
        return "<an unreadable metadata URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _begin, below
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at each checkpoint, never corrupt
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """A writer takes SQLite's write lock when it begins (BEGIN IMMEDIATE): a read-then-write
    transaction then never fails half-way with `database is locked`, it waits its turn instead."""
    write = conn.get_execution_options().get("sfduck_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _new_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("The metadata database must be a file (sqlite:///path), not in memory: "
                              "every process of sfduck shares it.")
        create_private_file(parsed.database)
        engine = sa.create_engine(parsed, json_serializer=to_json,
                                  connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, json_serializer=to_json, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                connect_args={"connect_timeout": 10})
    raise ConfigError(f"SFDUCK_METADATA_URL must name a SQLite file (sqlite:///path) or a PostgreSQL "
                      f"database (postgresql+psycopg://user@host/db), not {redact_url(url)}.")


def upgrade(engine: Engine) -> None:
    """Bring the schema up to the newest Alembic revision (idempotent, safe between processes:
    PostgreSQL runs it under an advisory lock, SQLite under its write lock)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext('sfduck metadata migrations'))"))
        else:
            conn = conn.execution_options(sfduck_write=True)
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext('sfduck metadata migrations'))"))
                conn.commit()


class MetadataEngine:
    """One metadata database's engine (shared by every instance for one URL in a process, and
    migrated once) and its transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        with _engines_lock:
            engine = _ENGINES.get(url)
            if engine is None:
                engine = _new_engine(url)
                try:
                    upgrade(engine)
                except sa.exc.OperationalError as exc:
                    engine.dispose()
                    raise StoreBusyError(f"Could not open the metadata database {self.describe()}: "
                                         f"{self.redact(str(exc.orig))}") from None
                _ENGINES[url] = engine
                while len(_ENGINES) > _ENGINES_KEPT:
                    _ENGINES.popitem(last=False)[1].dispose()
            else:
                _ENGINES.move_to_end(url)
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        return redact_url(self.url)

    def redact(self, text: str) -> str:
        password = make_url(self.url).password
        return text.replace(str(password), "***") if password else text

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot for one operation."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sfduck_write=True)
            with conn.begin():
                yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()

    @staticmethod
    def forget_all() -> None:
        """Close every engine of this process (tests that remove their folders, and at exit)."""
        with _engines_lock:
            for engine in _ENGINES.values():
                engine.dispose()
            _ENGINES.clear()
