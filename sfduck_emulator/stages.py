"""Named, temporary and user stages, kept as folders where fakesnow keeps its stages."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

import snowflake.connector.errors
from fakesnow.fakes import FakeSnowflakeConnection
from fakesnow.transforms import stage as fs_stage

from sfduck_emulator.errors import stage_not_found, syntax_error, unsupported
from sfduck_emulator.scanner import Token, skip_quoted_ident

USER_STAGE_ROOT = os.path.join(fs_stage.LOCAL_BUCKET_PATH, "_sfduck_user_stages")


def normalise_ident(part: str) -> str:
    if len(part) >= 2 and part.startswith('"') and part.endswith('"'):
        return part[1:-1].replace('""', '"')
    return part.upper()


def split_outside_quotes(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    parts, buf, i, splits = [], [], 0, 0
    while i < len(text):
        if text[i] == '"':
            j = skip_quoted_ident(text, i)
            buf.append(text[i:j])
            i = j
        elif text[i] == sep and (maxsplit < 0 or splits < maxsplit):
            parts.append("".join(buf))
            buf = []
            splits += 1
            i += 1
        else:
            buf.append(text[i])
            i += 1
    parts.append("".join(buf))
    return parts


@dataclass(frozen=True)
class Stage:
    """A resolved stage: where its files live and how LIST names them."""

    fqname: str  # DB.SCHEMA.NAME, or "~" for the user stage
    directory: str  # ends with "/"
    list_prefix: str  # what LIST puts before a file's path inside the stage
    temporary: bool = False

    def files(self, prefix: str = "", pattern: str | None = None) -> list[str]:
        """Stage-relative paths (posix) of files under prefix, sorted."""
        found = []
        if os.path.isdir(self.directory):
            for root, _dirs, names in os.walk(self.directory):
                for name in names:
                    rel = os.path.relpath(os.path.join(root, name), self.directory).replace(os.sep, "/")
                    if rel.startswith(prefix) and (
                        pattern is None or re.fullmatch(pattern, self.list_prefix + rel)
                    ):
                        found.append(rel)
        return sorted(found)


def stage_ref(tok: Token) -> tuple[str, str]:
    """('@name-part', 'path') from a stage token such as @db."My Stage"/a/b or '@~/x'."""
    text = tok.text
    if not text.startswith("@"):
        raise syntax_error(f"'{text}' is not a stage reference (it must start with @)")
    name, *rest = split_outside_quotes(text[1:], "/", maxsplit=1)
    return name, rest[0] if rest else ""


def resolve_stage(conn: FakeSnowflakeConnection, name: str, user: str) -> Stage:
    if name == "~":
        return Stage("~", os.path.join(USER_STAGE_ROOT, user) + "/", "")
    if name.startswith("%"):
        raise unsupported("a table stage (@%table) in COPY INTO <location>/GET/REMOVE")
    parts = [normalise_ident(p) for p in split_outside_quotes(name, ".")]
    if len(parts) > 3 or not all(parts):
        raise syntax_error(f"invalid stage name {name}")
    catalog = parts[-3] if len(parts) == 3 else conn.database
    schema = parts[-2] if len(parts) >= 2 else conn.schema
    if not catalog or not schema:
        raise snowflake.connector.errors.ProgrammingError(
            msg="Cannot perform operation. This session does not have a current database or schema.",
            errno=90105,
            sqlstate="22000",
        )
    fqname = f"{catalog}.{schema}.{parts[-1]}"
    row = conn._duck_conn.execute(  # the session's own DuckDB cursor
        "SELECT type FROM _fs_global._fs_information_schema._fs_stages "
        "WHERE database_name = ? AND schema_name = ? AND name = ?",
        [catalog, schema, parts[-1]],
    ).fetchone()
    if row is None:
        raise stage_not_found(fqname)
    return Stage(
        fqname,
        fs_stage.internal_dir(fqname),
        f"{parts[-1].lower()}/",
        temporary="TEMPORARY" in (row[0] or "").upper(),
    )


def drop_stage_storage(duck: Any, fqname: str) -> None:
    catalog, schema, name = fqname.split(".")
    duck.execute(
        "DELETE FROM _fs_global._fs_information_schema._fs_stages "
        "WHERE database_name = ? AND schema_name = ? AND name = ?",
        [catalog, schema, name],
    )
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(fs_stage.internal_dir(fqname))
