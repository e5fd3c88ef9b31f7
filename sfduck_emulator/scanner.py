"""A small SQL scanner: enough to recognise the statements the emulator answers itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import snowflake.connector.errors

from sfduck_emulator.errors import syntax_error, unsupported

_PUNCT = "(),=;"


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "str", "punct"
    text: str  # words keep their spelling (quotes included), strings are unescaped
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def skip_quoted_ident(sql: str, i: int) -> int:
    """Index just past the double-quoted identifier starting at sql[i]."""
    j = i + 1
    while j < len(sql):
        if sql[j] == '"':
            if j + 1 < len(sql) and sql[j + 1] == '"':
                j += 2
                continue
            return j + 1
        j += 1
    return j


def tokenize(sql: str) -> list[Token]:
    toks: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith(("--", "//"), i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif c == "'":
            j, buf = i + 1, []
            while j < n:
                if sql[j] == "\\" and j + 1 < n:
                    buf.append({"n": "\n", "t": "\t", "0": "\0"}.get(sql[j + 1], sql[j + 1]))
                    j += 2
                elif sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        buf.append("'")
                        j += 2
                    else:
                        break
                else:
                    buf.append(sql[j])
                    j += 1
            toks.append(Token("str", "".join(buf), i, min(j + 1, n)))
            i = j + 1
        elif sql.startswith("$$", i):
            close = sql.find("$$", i + 2)
            end = n if close < 0 else close
            toks.append(Token("str", sql[i + 2 : end], i, min(end + 2, n)))
            i = end + 2
        elif c in _PUNCT:
            toks.append(Token("punct", c, i, i + 1))
            i += 1
        else:
            j = i
            while j < n and not sql[j].isspace() and sql[j] not in _PUNCT and sql[j] != "'":
                j = skip_quoted_ident(sql, j) if sql[j] == '"' else j + 1
            toks.append(Token("word", sql[i:j], i, j))
            i = j
    while toks and toks[-1].text == ";" and toks[-1].kind == "punct":
        toks.pop()
    return toks


def matching_paren(toks: list[Token], i: int) -> int:
    """Index of the ')' closing the '(' at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "punct" and toks[j].text == "(":
            depth += 1
        elif toks[j].kind == "punct" and toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    raise syntax_error("unbalanced parentheses")


def parse_options(toks: list[Token], i: int, stop: int | None = None) -> dict[str, Any]:
    """KEY = value pairs; a parenthesised value becomes a nested dict."""
    stop = len(toks) if stop is None else stop
    opts: dict[str, Any] = {}
    while i < stop:
        key = toks[i]
        if key.kind != "word":
            raise syntax_error(f"unexpected '{key.text}'")
        if key.upper == "PARTITION":
            raise unsupported("COPY INTO <location> ... PARTITION BY")
        if i + 1 >= stop or toks[i + 1].text != "=":
            raise syntax_error(f"expected '=' after {key.text}")
        if i + 2 >= stop:
            raise syntax_error(f"missing value for {key.text}")
        value_tok = toks[i + 2]
        if value_tok.kind == "punct" and value_tok.text == "(":
            close = matching_paren(toks, i + 2)
            opts[key.upper] = parse_options(toks, i + 3, close)
            i = close + 1
        else:
            opts[key.upper] = value_tok.text if value_tok.kind == "str" else value_tok.text.upper()
            i += 3
        if i < stop and toks[i].text == ",":
            i += 1
    return opts


def bool_option(opts: dict[str, Any], key: str, default: bool) -> bool:
    value = opts.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    raise snowflake.connector.errors.ProgrammingError(
        msg=f"SQL compilation error:\ninvalid value [{value}] for parameter '{key}'",
        errno=1008,
        sqlstate="22023",
    )
