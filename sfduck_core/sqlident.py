"""The one place identifiers (and the few literals that cannot be bound) are quoted.

Snowflake and DuckDB share the SQL standard's double-quoted identifier syntax, so one helper
serves both. User text is never formatted into SQL any other way: values are bound as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

from sfduck_core.errors import InvalidIdentifierError

MAX_IDENTIFIER_LENGTH = 255


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Reject names no real table or column can have, before they reach any SQL."""
    if not isinstance(name, str) or not name:
        raise InvalidIdentifierError(f"The {what} is empty.")
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(f"The {what} is longer than {MAX_IDENTIFIER_LENGTH} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidIdentifierError(f"The {what} {name!r} contains control characters.")
    return name


def quote_ident(name: str, what: str = "identifier") -> str:
    """Quote one identifier exactly as written (case and all), doubling embedded quotes."""
    validate_identifier(name, what)
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str, what: str = "value") -> str:
    """A SQL string literal, for the few values DuckDB cannot take as bound parameters (LOAD's
    file, ATTACH's connection string and options). Quotes are doubled; NUL, which could end the
    statement early in C code, is refused."""
    if not isinstance(value, str):
        raise InvalidIdentifierError(f"The {what} must be text.")
    if "\0" in value:
        raise InvalidIdentifierError(f"The {what} contains a NUL character.")
    return "'" + value.replace("'", "''") + "'"


def qualified(*parts: str) -> str:
    """Quote and dot-join a multi-part name such as schema.table."""
    return ".".join(quote_ident(p) for p in parts)


def quote_list(names: Iterable[str]) -> str:
    return ", ".join(quote_ident(n) for n in names)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def local_name_key(name: str) -> str:
    """How DuckDB compares names: ASCII letters ignore case (`ORDERS` is `"Orders"`), other
    letters do not (`"É"` is not `"é"`). Snowflake's quoted names are case-sensitive, so two of
    its tables or columns can land on one DuckDB name."""
    return name.translate(_ASCII_LOWER)


def case_collisions(names: Iterable[str]) -> list[list[str]]:
    """Groups of names that are distinct in Snowflake but one name in DuckDB."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(local_name_key(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]
