"""The lines that open sfduck's synced data from an analyst's own DuckDB (`sfduck reader`, the
Preview page's last tab and the README show this text, made here).

Nothing in them needs a network: the pip packages are pinned to the DuckDB version that wrote the
data (an extension built for one version refuses to load into another), and extensions are loaded
from those packages (`duckdb_extensions.import_extension`, or `LOAD '<file>'`): a plain
`LOAD ducklake` would try to download. Paths are absolute; the lake is attached READ_ONLY. No
password or key is ever printed: a PostgreSQL catalog's password becomes a placeholder.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sfduck_core.config import Target
from sfduck_core.sqlident import qualified, quote_literal
from sfduck_core.storage import EXTENSION_PACKAGES, extension_file

FORMS = ("python", "sql", "cli")
ALIAS = "lake"
PASSWORD_PLACEHOLDER = "YOUR_PASSWORD"
_CATALOG_EXTENSION = {"sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}
_LIBPQ_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True)
class ReaderPlan:
    """What every form is made of: packages, extensions, the ATTACH (or file), the first query."""

    packages: tuple[str, ...]
    extensions: tuple[str, ...]  # in load order (a catalog's scanner before ducklake)
    attach: str | None  # the lake's ATTACH statement; None for a DuckDB file
    database: str | None  # the DuckDB file's absolute path; None for a lake
    query: str
    notes: tuple[str, ...]


def plan(target: Target, schema: str | None = None, table: str | None = None) -> ReaderPlan:
    version = duckdb.__version__
    notes: list[str] = []
    if not target.is_lake:
        path = str(Path(str(target.path)).resolve())
        name = qualified(schema, table) if schema and table else None
        query = f"SELECT count(*) FROM {name}" if name else "SHOW ALL TABLES"
        notes.append("While your DuckDB keeps this file open, sfduck's syncs wait for it: close it when done "
                     "(a DuckLake target's readers never hold up a sync).")
        return ReaderPlan((f"duckdb=={version}",), (), None, path, query, tuple(notes))
    extensions = [_CATALOG_EXTENSION[target.catalog or "sqlite"], "ducklake"]
    data_path = target.data_path or ""
    if "://" in data_path:
        extensions.insert(0, "httpfs")
        notes.append("The data is in object storage: create a secret first, e.g. CREATE SECRET (TYPE s3, KEY_ID "
                     "'...', SECRET '...', REGION '...') with your own keys.")
    else:
        data_path = str(Path(data_path).resolve()) + "/"
    location = target.catalog_location
    if target.catalog == "sqlite":
        location = str(Path(location).resolve())
    elif _LIBPQ_PASSWORD.search(location) or _URI_PASSWORD.search(location):
        location = _URI_PASSWORD.sub(rf"\1{PASSWORD_PLACEHOLDER}@",
                                     _LIBPQ_PASSWORD.sub(rf"\g<1>{PASSWORD_PLACEHOLDER}", location))
        notes.append(f"Put your PostgreSQL password where {PASSWORD_PLACEHOLDER} stands (or leave the password "
                     "out of the string and set PGPASSWORD, or use ~/.pgpass).")
    attach = (f"ATTACH {quote_literal(f'ducklake:{target.catalog}:{location}', 'lake')} AS {ALIAS} "
              f"(DATA_PATH {quote_literal(data_path, 'lake data path')}, READ_ONLY)")
    query = (f"SELECT count(*) FROM {ALIAS}.{qualified(schema, table)}" if schema and table
             else "SHOW ALL TABLES")
    notes.append("sfduck keeps syncing while you read; you see each sync whole, once it has committed.")
    packages = (f"duckdb=={version}", f"duckdb-extensions=={version}",
                *(f"{EXTENSION_PACKAGES[e].replace('_', '-')}=={version}" for e in extensions))
    return ReaderPlan(packages, tuple(extensions), attach, None, query, tuple(notes))


def _pip_line(p: ReaderPlan) -> str:
    return "pip install " + " ".join(p.packages)


def reader_text(target: Target, form: str = "python", schema: str | None = None, table: str | None = None) -> str:
    """The lines of one form: `python` (a script leaving the connection in `con`), `sql` (for any
    DuckDB of that version on this machine: extension files loaded by path), `cli` (the DuckDB
    command line, from pip)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}")
    p = plan(target, schema, table)
    notes = [f"# {n}" for n in p.notes]
    if form == "python":
        lines = [f"# In a shell, once (Python 3.10+): {_pip_line(p)}", *notes, "import duckdb"]
        if p.database is not None:
            lines.append(f"con = duckdb.connect({p.database!r}, read_only=True)")
        else:
            lines += ["from duckdb_extensions import import_extension", "con = duckdb.connect()"]
            for e in p.extensions:
                lines += [f'import_extension("{e}", con=con)  # copied from its pip package: no download',
                          f'con.load_extension("{e}")']
            lines.append(f"con.execute({p.attach!r})")
        lines.append(f"con.sql({p.query!r}).show()")
        return "\n".join(lines) + "\n"
    sql_notes = [f"-- {n}" for n in p.notes]
    if form == "sql":
        lines = [f"-- In DuckDB {duckdb.__version__} on this machine (the extensions come from sfduck's own "
                 "packages):", *sql_notes]
        if p.database is not None:
            lines.append(f"ATTACH {quote_literal(p.database, 'database path')} AS sfduck (READ_ONLY);")
            lines.append("USE sfduck;")
        else:
            lines.append("SET autoinstall_known_extensions = false;")
            lines += [f"LOAD {quote_literal(str(extension_file(e)), 'extension path')};" for e in p.extensions]
            lines += [f"{p.attach};", f"USE {ALIAS};"]
        lines.append(p.query + ";")
        return "\n".join(lines) + "\n"
    # the DuckDB command line, installed with pip (no download at run time either)
    cli_packages = (f"duckdb-cli=={duckdb.__version__}", *p.packages)
    lines = [f"# In a shell, once: pip install {' '.join(cli_packages)}", *notes]
    if p.database is not None:
        lines.append(f"duckdb -readonly {_shell(p.database)} -c {_shell(p.query + ';')}")
        return "\n".join(lines) + "\n"
    imports = "; ".join(f'import_extension("{e}")' for e in p.extensions)
    lines.append("# once: put the packaged extensions where DuckDB looks for them (~/.duckdb/extensions)")
    lines.append(_python_c(f"from duckdb_extensions import import_extension; {imports}"))
    loads = " ".join(f"LOAD {e};" for e in p.extensions)
    lines.append(f"duckdb -cmd {_shell(f'{loads} {p.attach}; USE {ALIAS}; {p.query};')}")
    return "\n".join(lines) + "\n"



def _python_c(code: str) -> str:
    return f"python -c {_shell(code)}"


def _shell(text: str) -> str:
    """One shell word; in double quotes when that needs no escapes (SQL holds single quotes)."""
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)
