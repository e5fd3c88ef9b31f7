"""User-supplied row filters (`--where EXPR`), made safe before any database sees them.

A filter is text from the user that ends up after `WHERE` in a query run with our credentials, so it
is treated as hostile. We never paste the text into SQL: it is parsed with sqlglot's Snowflake dialect,
checked node by node against an allow-list (one boolean condition over the table's own columns, pure
scalar functions only), and the SQL we run is regenerated from the checked tree with every column
re-quoted exactly as the table spells it. Anything the checks do not positively recognise is refused
with a message saying what and where, so the user can fix it without guessing.

Layers, each of which alone would stop the classic attacks:
1. text checks (length, control characters);
2. token checks (comments, `;`, bind variables, session variables, stage references, parentheses);
3. AST allow-list (node classes, functions, columns) and a boolean-valued top level;
4. a round trip: the generated SQL is tokenised and parsed again and must give the same tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError
from sqlglot.tokens import Token, TokenType

from sfduck_core.errors import UnsafeFilterError
from sfduck_core.sqlident import quote_ident

MAX_FILTER_LENGTH = 4000
# Deeper nesting than this is never a real filter, and sqlglot recurses per level.
MAX_PAREN_DEPTH = 64

_SNOWFLAKE = Dialect.get_or_raise("snowflake")
_DUCKDB = Dialect.get_or_raise("duckdb")

# Function classes a filter may call, with the spellings users know them by. Every one is a pure,
# row-local scalar function: no I/O, no randomness, no session or account state (CURRENT_DATE and
# CURRENT_TIMESTAMP read the clock only). Membership is by exact class, so a subclass sqlglot adds later
# is refused until someone has looked at it.
_FUNCTIONS: dict[type[exp.Expression], tuple[str, ...]] = {
    exp.Upper: ("UPPER",),
    exp.Lower: ("LOWER",),
    exp.Trim: ("TRIM", "LTRIM", "RTRIM"),
    exp.Length: ("LENGTH", "LEN"),
    exp.Substring: ("SUBSTR", "SUBSTRING"),
    exp.Left: ("LEFT",),
    exp.Right: ("RIGHT",),
    exp.Replace: ("REPLACE",),
    exp.Concat: ("CONCAT",),
    exp.Contains: ("CONTAINS",),
    exp.StartsWith: ("STARTSWITH",),
    exp.EndsWith: ("ENDSWITH",),
    exp.RegexpLike: ("REGEXP_LIKE", "RLIKE"),
    exp.Coalesce: ("COALESCE", "NVL", "IFNULL"),
    exp.Nullif: ("NULLIF",),
    exp.If: ("IFF", "IF"),
    exp.Case: ("CASE",),
    exp.Greatest: ("GREATEST",),
    exp.Least: ("LEAST",),
    exp.Abs: ("ABS",),
    exp.Round: ("ROUND",),
    exp.Floor: ("FLOOR",),
    exp.Ceil: ("CEIL",),
    exp.Sign: ("SIGN",),
    exp.Cast: ("CAST",),
    exp.TryCast: ("TRY_CAST",),
    exp.TsOrDsToDate: ("TO_DATE", "DATE", "TRY_TO_DATE"),
    exp.StrToTime: ("TO_TIMESTAMP",),
    exp.TimestampTrunc: ("DATE_TRUNC",),
    exp.DateTrunc: ("DATE_TRUNC",),
    exp.DateAdd: ("DATEADD",),
    exp.DateDiff: ("DATEDIFF",),
    exp.Extract: ("DATE_PART", "EXTRACT"),
    exp.Year: ("YEAR",),
    exp.Quarter: ("QUARTER",),
    exp.Month: ("MONTH",),
    exp.Week: ("WEEK",),
    exp.Day: ("DAY",),
    exp.DayOfWeek: ("DAYOFWEEK",),
    exp.Hour: ("HOUR",),
    exp.Minute: ("MINUTE",),
    exp.Second: ("SECOND",),
    exp.LastDay: ("LAST_DAY",),
    exp.CurrentDate: ("CURRENT_DATE",),
    exp.CurrentTimestamp: ("CURRENT_TIMESTAMP",),
}

# sqlglot has no class for these, so they arrive as `Anonymous`; they are allowed by name.
_ANONYMOUS_FUNCTIONS = frozenset({"TO_TIMESTAMP", "TO_TIMESTAMP_NTZ", "TRY_TO_TIMESTAMP"})

ALLOWED_FUNCTIONS: tuple[str, ...] = tuple(
    sorted({name for names in _FUNCTIONS.values() for name in names} | _ANONYMOUS_FUNCTIONS)
)

_OPERATORS: frozenset[type[exp.Expression]] = frozenset(
    {
        exp.And,
        exp.Or,
        exp.Not,
        exp.Paren,
        exp.EQ,
        exp.NEQ,
        exp.GT,
        exp.GTE,
        exp.LT,
        exp.LTE,
        exp.NullSafeEQ,
        exp.NullSafeNEQ,
        exp.Is,
        exp.In,
        exp.Between,
        exp.Like,
        exp.ILike,
        exp.Escape,
        exp.Add,
        exp.Sub,
        exp.Mul,
        exp.Div,
        exp.Mod,
        exp.Neg,
        exp.DPipe,
        exp.Interval,
    }
)
_LITERALS: frozenset[type[exp.Expression]] = frozenset({exp.Literal, exp.Boolean, exp.Null, exp.RawString})

# Date-part words (DAY in DATEADD(DAY, ...)) are the only bare words allowed outside column references.
_UNIT_SLOTS: frozenset[tuple[type[exp.Expression], str]] = frozenset(
    {
        (exp.DateAdd, "unit"),
        (exp.DateDiff, "unit"),
        (exp.TimestampTrunc, "unit"),
        (exp.DateTrunc, "unit"),
        (exp.Interval, "unit"),
        (exp.Extract, "this"),
    }
)
_UNIT_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")

_STATEMENT_TOKENS = frozenset(
    set(_SNOWFLAKE.parser_class.STATEMENT_PARSERS)
    | set(_SNOWFLAKE.tokenizer_class.COMMANDS)
    | {TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.WHERE}
) - {TokenType.SEMICOLON}
_SET_OPERATION_TOKENS = frozenset({TokenType.UNION, TokenType.INTERSECT, TokenType.EXCEPT})
_CLAUSE_TOKENS = frozenset(
    {TokenType.ORDER_BY, TokenType.GROUP_BY, TokenType.LIMIT, TokenType.HAVING, TokenType.QUALIFY}
)


@dataclass(frozen=True)
class SafeFilter:
    """A filter that passed every check; only `sql` (or `duckdb_sql()`) may reach a database.

    `original` is kept for messages and logs only: it is never executed.
    """

    original: str
    sql: str
    columns: tuple[str, ...]

    def duckdb_sql(self) -> str:
        """The same predicate for the local DuckDB copy, so local and remote filtering agree.

        It is derived from `sql` by validating it again (cheap), rather than trusting whoever built this
        object, and then rendering the checked tree with sqlglot's DuckDB dialect.
        """
        tree, _ = _checked_tree(self.sql, self.columns)
        return _render(_duckdb_compatible(tree), _DUCKDB)


def validate_filter(expression: str, columns: Sequence[str]) -> SafeFilter:
    """Turn user text into a `SafeFilter` or refuse it with `UnsafeFilterError`, offline.

    `columns` are the table's real column names (exact case). No database is contacted.
    """
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise TypeError("columns must be a sequence of column names, not a single string")
    tree, used = _checked_tree(expression, columns)
    sql = _render(tree, _SNOWFLAKE)
    _check_round_trip(sql, tree, columns)
    return SafeFilter(original=expression, sql=sql, columns=used)


# --------------------------------------------------------------------------------------------------
# Pipeline


def _checked_tree(expression: str, columns: Sequence[str]) -> tuple[exp.Expression, tuple[str, ...]]:
    _check_text(expression)
    tokens = _tokenize(expression)
    _check_tokens(expression, tokens)
    tree = _parse(expression, tokens)
    try:
        used = _check_nodes(tree, columns)
        _check_boolean(tree)
    except RecursionError:
        raise UnsafeFilterError("The filter is nested too deeply.") from None
    return tree, used


def _check_text(expression: str) -> None:
    if not isinstance(expression, str):
        raise UnsafeFilterError("The filter must be text.")
    if not expression.strip():
        raise UnsafeFilterError("The filter is empty.")
    if len(expression) > MAX_FILTER_LENGTH:
        raise UnsafeFilterError(
            f"The filter is {len(expression)} characters long; the limit is {MAX_FILTER_LENGTH}."
        )
    for pos, ch in enumerate(expression):
        if (ord(ch) < 32 and ch not in "\t\n\r") or ord(ch) == 127:
            raise UnsafeFilterError(
                f"The filter contains a control character (U+{ord(ch):04X}) at character {pos + 1}."
            )


def _tokenize(expression: str) -> list[Token]:
    try:
        tokens = _SNOWFLAKE.tokenize(expression)
    except TokenError:
        raise UnsafeFilterError(_describe_tokenize_failure(expression)) from None
    if not tokens:
        # Non-blank text that yields no tokens can only be a comment.
        raise UnsafeFilterError("The filter is only a comment; comments are not allowed.")
    return tokens


def _check_tokens(expression: str, tokens: list[Token]) -> None:
    # sqlglot attaches comments to neighbouring tokens, so a comment shows up here wherever it was.
    for tok in tokens:
        if tok.comments:
            where = _first_comment(expression)
            at = f" ({where[1]!r} at character {where[0] + 1})" if where else ""
            raise UnsafeFilterError(
                f"The filter contains a comment{at}; comments (--, //, /* */) are not allowed outside "
                "string literals."
            )
    for tok in tokens:
        if tok.token_type == TokenType.STRING:
            _check_string_token(expression, tok)
    depth_stack: list[int] = []
    for i, tok in enumerate(tokens):
        pos = tok.start + 1
        kind = tok.token_type
        if kind == TokenType.SEMICOLON:
            raise UnsafeFilterError(
                f"The filter contains ';' at character {pos}; a filter must be a single expression, "
                "not several statements."
            )
        if kind in (TokenType.IDENTIFIER, TokenType.VAR) and ";" in tok.text:
            raise UnsafeFilterError(
                f"The filter contains ';' inside the quoted name \"{tok.text}\" at character {pos}; "
                "';' is only allowed inside string literals."
            )
        if kind == TokenType.PARAMETER:
            nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
            if tok.text == "@":
                raise UnsafeFilterError(
                    f"The filter refers to a stage (@{nxt}) at character {pos}; stage references are "
                    "not allowed."
                )
            raise UnsafeFilterError(
                f"The filter uses the variable {tok.text}{nxt} at character {pos}; session variables and "
                "positional references are not allowed - write the value literally."
            )
        if kind == TokenType.PLACEHOLDER:
            raise UnsafeFilterError(
                f"The filter contains the placeholder {tok.text!r} at character {pos}; bind variables are "
                "not allowed - write the value literally."
            )
        if kind == TokenType.L_PAREN:
            depth_stack.append(pos)
            if len(depth_stack) > MAX_PAREN_DEPTH:
                raise UnsafeFilterError(
                    f"The filter nests parentheses more than {MAX_PAREN_DEPTH} levels deep."
                )
        elif kind == TokenType.R_PAREN:
            if not depth_stack:
                raise UnsafeFilterError(
                    f"Unbalanced parentheses: the ')' at character {pos} has no matching '('."
                )
            depth_stack.pop()
    if depth_stack:
        raise UnsafeFilterError(
            f"Unbalanced parentheses: the '(' at character {depth_stack[-1]} is never closed."
        )


def _parse(expression: str, tokens: list[Token]) -> exp.Expression:
    # Parsing straight into a condition (not a statement) means a leading DROP/SELECT/CALL can never
    # become a statement node, and columns named like statement keywords (COMMENT, SHOW) still parse.
    parser = _SNOWFLAKE.parser(error_level=ErrorLevel.IMMEDIATE)
    try:
        trees = parser.parse_into(exp.Condition, tokens, expression)
    except ParseError as err:
        raise UnsafeFilterError(_describe_parse_error(err, tokens)) from None
    except RecursionError:
        raise UnsafeFilterError("The filter is nested too deeply.") from None
    except SqlglotError as err:
        raise UnsafeFilterError(f"The filter is not a valid condition: {err}") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise UnsafeFilterError("The filter must be exactly one expression.")
    return trees[0]


def _check_nodes(tree: exp.Expression, columns: Sequence[str]) -> tuple[str, ...]:
    """Allow-list walk: every node must be something we recognise as harmless, in a place it may be."""
    resolver = _ColumnResolver(columns)
    used: dict[str, None] = {}
    for node in tree.walk(bfs=False):
        if node.comments:
            raise UnsafeFilterError("The filter contains a comment; comments are not allowed.")
        parent = node.parent
        kind = type(node)

        if kind is exp.Column:
            used[resolver.resolve(node)] = None
        elif kind is exp.Identifier:
            if not (type(parent) is exp.Column and node.arg_key == "this"):
                raise UnsafeFilterError(f"The name {_snippet(node)} is not allowed here.")
        elif kind is exp.Var:
            if (type(parent), node.arg_key) not in _UNIT_SLOTS or not _UNIT_WORD.fullmatch(node.name):
                raise UnsafeFilterError(f"The word {node.name!r} is not allowed here.")
        elif kind is exp.DataType:
            _check_data_type(node)
        elif kind is exp.DataTypeParam:
            if type(parent) is not exp.DataType:
                raise UnsafeFilterError(f"{_snippet(node)} is not allowed here.")
        elif kind is exp.In:
            _check_in_list(node)
        elif kind is exp.Literal and node.is_string:
            _check_string_value(str(node.this), "string literal")
        elif kind is exp.RawString:
            _check_string_value(str(node.this), "$$ string")
        elif not (kind in _OPERATORS or kind in _LITERALS or kind in _FUNCTIONS or _allowed_anonymous(node)):
            raise UnsafeFilterError(_describe_refused_node(node))

    for real in used:
        _require_exact_quoting(real)
    _requote_columns(tree, resolver)
    return tuple(used)


# Snowflake's escape sequences in single-quoted strings (its documentation, "String & binary data types").
_SF_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_SF_ESCAPE = re.compile(r"\\(?:([0-7]{3})|x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|(.))|''", re.DOTALL)


def snowflake_string_value(body: str) -> str:
    """What Snowflake reads from the text between the quotes of a '...' literal.

    Decoded here rather than trusted from sqlglot, whose tokenizer decodes only some escapes and
    differs between versions (30.17 keeps `\\0` as two characters, then writes it back as a literal
    backslash): the checks must see the value Snowflake would see."""
    def decode(m: re.Match[str]) -> str:
        octal, hexa, uni, other = m.groups()
        if m.group(0) == "''":
            return "'"
        if octal or hexa or uni:
            return chr(int(octal, 8) if octal else int(hexa or uni, 16))
        return _SF_SIMPLE_ESCAPES.get(other, other)

    return _SF_ESCAPE.sub(decode, body)


def _check_string_token(expression: str, tok: Token) -> None:
    """Check a string literal as Snowflake reads the user's text: no control characters once its
    escapes are decoded (`'\\0'`, `'\\x01'`, `'\\001'`, `'\\u0001'`), whatever sqlglot made of them."""
    raw = expression[tok.start:tok.end + 1]
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":  # not a $$ string, which has no escapes
        _check_string_value(snowflake_string_value(raw[1:-1]), "string literal")


def _check_string_value(value: str, what: str) -> None:
    # An escape such as '\0' decodes to a NUL byte, which would reach DuckDB raw and can truncate SQL.
    for ch in value:
        if (ord(ch) < 32 and ch not in "\t\n\r") or ord(ch) == 127:
            raise UnsafeFilterError(f"A {what} in the filter contains the control character U+{ord(ch):04X}.")


def _allowed_anonymous(node: exp.Expression) -> bool:
    return type(node) is exp.Anonymous and str(node.name).upper() in _ANONYMOUS_FUNCTIONS


def _check_data_type(node: exp.DataType) -> None:
    parent = node.parent
    if (type(parent), node.arg_key) not in {
        (exp.Cast, "to"),
        (exp.TryCast, "to"),
        (exp.StrToTime, "target_type"),
    }:
        raise UnsafeFilterError(f"The type {_snippet(node)} is not allowed here.")
    if node.is_type(exp.DataType.Type.USERDEFINED) or any(
        isinstance(child, exp.DataType) for child in node.expressions
    ):
        raise UnsafeFilterError(f"Casting to {_snippet(node)} is not allowed; use a built-in scalar type.")


def _check_in_list(node: exp.In) -> None:
    if node.args.get("query") is not None:
        raise UnsafeFilterError(f"Subqueries are not allowed in a filter: {_snippet(node)}.")
    for key in ("unnest", "field"):
        if node.args.get(key) is not None:
            raise UnsafeFilterError(
                f"IN must be followed by a list of literal values; {_snippet(node)} is not allowed."
            )
    for item in node.expressions:
        if not _is_constant(item):
            raise UnsafeFilterError(
                f"IN lists may only contain literal values; {_snippet(item)} is not a literal."
            )


def _is_constant(node: exp.Expression) -> bool:
    if type(node) in _LITERALS:
        return True
    if type(node) in (exp.Neg, exp.Paren):
        return _is_constant(node.this)
    if type(node) in (exp.Cast, exp.TryCast):
        return _is_constant(node.this)
    return False


def _check_boolean(tree: exp.Expression) -> None:
    """Refuse filters like `1` or `'abc'`, which Snowflake and DuckDB would treat differently or reject."""
    pending: list[tuple[exp.Expression, str]] = [(tree, "")]
    while pending:
        node, role = pending.pop()
        node = node.unnest()
        kind = type(node)
        # Children are pushed last-first so the leftmost offender is the one reported.
        if kind in (exp.And, exp.Or):
            word = "AND" if kind is exp.And else "OR"
            pending += [(node.right, f"an operand of {word}"), (node.left, f"an operand of {word}")]
        elif kind is exp.Not:
            pending.append((node.this, "the operand of NOT"))
        elif kind is exp.If:
            results = [node.args["true"], node.args.get("false")]
            pending += [(r, "a result of IFF") for r in reversed(results) if r is not None]
        elif kind is exp.Case:
            results = [branch.args["true"] for branch in node.args.get("ifs") or []]
            results.append(node.args.get("default"))
            pending += [(r, "a result of CASE") for r in reversed(results) if r is not None]
        elif kind in (exp.Cast, exp.TryCast):
            if not node.to.is_type(exp.DataType.Type.BOOLEAN):
                _refuse_non_boolean(node, role)
        elif isinstance(node, exp.Predicate) or kind in (
            exp.Escape,
            exp.Boolean,
            exp.Column,
            exp.Contains,
            exp.StartsWith,
            exp.EndsWith,
        ):
            continue
        else:
            _refuse_non_boolean(node, role)


def _refuse_non_boolean(node: exp.Expression, role: str) -> None:
    what = _value_kind(node)
    subject = f"{role[0].upper()}{role[1:]}, {_snippet(node)}," if role else f"The filter {_snippet(node)}"
    raise UnsafeFilterError(
        f"{subject} is {what}, not a condition. A filter must be true or false for each row: a comparison, "
        "AND/OR/NOT, IS [NOT] NULL, IN (...), BETWEEN, LIKE/ILIKE, a boolean column, or TRUE/FALSE."
    )


def _value_kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Literal):
        return "a text literal" if node.is_string else "a number"
    if isinstance(node, exp.Null):
        return "NULL"
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe)):
        return "an arithmetic expression"
    if isinstance(node, exp.Func):
        return "a function value"
    return "a value"


# --------------------------------------------------------------------------------------------------
# Columns


class _ColumnResolver:
    """Snowflake-style name matching: unquoted names ignore case (if that is unambiguous), quoted do not."""

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns: list[str] = []
        for name in columns:
            if not isinstance(name, str):
                raise TypeError(f"column names must be strings, got {type(name).__name__}")
            if name not in self.columns:
                self.columns.append(name)
        self.resolved: dict[int, str] = {}

    def resolve(self, column: exp.Column) -> str:
        typed = column.sql(dialect=_SNOWFLAKE)
        for part in ("table", "db", "catalog"):
            if column.args.get(part) is not None:
                raise UnsafeFilterError(
                    f"The column reference {typed} is qualified; refer to the table's columns by name alone."
                )
        ident = column.this
        if not isinstance(ident, exp.Identifier):
            raise UnsafeFilterError(f"{typed} is not allowed; name each column explicitly.")
        name = ident.this
        if ident.quoted:
            if name in self.columns:
                real = name
            else:
                near = [c for c in self.columns if c.casefold() == name.casefold()]
                hint = f" Did you mean {quote_ident(near[0])}?" if near else self._listing()
                raise UnsafeFilterError(
                    f"Unknown column {typed}: quoted names must match a column exactly, including case.{hint}"
                )
        else:
            matches = [c for c in self.columns if c.casefold() == name.casefold()]
            if not matches:
                raise UnsafeFilterError(f"Unknown column {name}.{self._listing()}")
            if len(matches) > 1:
                choices = ", ".join(quote_ident(c) for c in matches)
                raise UnsafeFilterError(
                    f"The column name {name} is ambiguous: it matches {choices}. Quote the one you mean."
                )
            real = matches[0]
        self.resolved[id(column)] = real
        return real

    def _listing(self) -> str:
        if not self.columns:
            return " The table has no columns."
        shown = ", ".join(self.columns[:30])
        more = f" and {len(self.columns) - 30} more" if len(self.columns) > 30 else ""
        return f" The table's columns are: {shown}{more}."


def _require_exact_quoting(real: str) -> None:
    """The generated SQL must quote names exactly as `quote_ident` does, or case could silently change."""
    expected = quote_ident(real, "column")
    for dialect in (_SNOWFLAKE, _DUCKDB):
        if exp.to_identifier(real, quoted=True).sql(dialect=dialect) != expected:
            raise UnsafeFilterError(f"The column name {expected} cannot be quoted reliably in a filter.")


def _requote_columns(tree: exp.Expression, resolver: _ColumnResolver) -> None:
    for column in list(tree.find_all(exp.Column)):
        real = resolver.resolved[id(column)]
        column.set("this", exp.to_identifier(real, quoted=True))
    # $$...$$ strings print as ordinary quoted strings; make the tree say so, for the round trip.
    for raw in list(tree.find_all(exp.RawString)):
        raw.replace(exp.Literal.string(raw.this))


# --------------------------------------------------------------------------------------------------
# Output


def _render(tree: exp.Expression, dialect: Dialect) -> str:
    try:
        sql = tree.sql(dialect=dialect, comments=False)
    except RecursionError:
        raise UnsafeFilterError("The filter is nested too deeply.") from None
    # Whatever the generator produced must still be one expression with no comments or separators.
    try:
        tokens = dialect.tokenize(sql)
    except TokenError:
        raise UnsafeFilterError("The filter could not be rendered safely.") from None
    if any(t.comments or t.token_type == TokenType.SEMICOLON for t in tokens):
        raise UnsafeFilterError("The filter could not be rendered safely.")
    return sql


def _check_round_trip(sql: str, tree: exp.Expression, columns: Sequence[str]) -> None:
    """Catch generator/escaping surprises: what Snowflake will parse must be exactly what we checked."""
    try:
        again, _ = _checked_tree(sql, columns)
        same = again == tree
    except (UnsafeFilterError, RecursionError):
        same = False
    if not same:
        raise UnsafeFilterError(
            "The filter could not be normalised reliably (it reads differently after rewriting); "
            "please simplify it."
        )


def _duckdb_compatible(tree: exp.Expression) -> exp.Expression:
    """Patch allowed Snowflake calls whose sqlglot DuckDB rendering would mean something else.

    sqlglot has no class for one-argument TO_TIMESTAMP, so it would pass through unchanged, and DuckDB's
    TO_TIMESTAMP only takes epoch seconds: text columns would fail to bind. A cast is what Snowflake does
    for text; numeric (epoch) arguments are the one case where the two still differ.
    """
    tree = tree.copy()
    for node in list(tree.find_all(exp.Anonymous)):
        name = str(node.name).upper()
        if name in _ANONYMOUS_FUNCTIONS and len(node.expressions) == 1:
            cast = exp.TryCast if name.startswith("TRY_") else exp.Cast
            node.replace(cast(this=node.expressions[0], to=exp.DataType.build("TIMESTAMP")))
    return tree


# --------------------------------------------------------------------------------------------------
# Messages


def _snippet(node: exp.Expression, limit: int = 60) -> str:
    try:
        text = node.sql(dialect=_SNOWFLAKE, comments=False)
    except Exception:  # a message must never fail; the refusal matters more than its wording
        text = type(node).__name__
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"`{text}`"


def _function_name(node: exp.Expression) -> str:
    """The name as Snowflake spells it (RANDOM, not sqlglot's RAND), so users recognise what they typed."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    try:
        rendered = node.sql(dialect=_SNOWFLAKE, comments=False)
    except Exception:  # a message must never fail; the refusal matters more than its wording
        rendered = ""
    head = rendered.split("(", 1)[0].strip()
    if head and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", head):
        return head.upper()
    return node.sql_name() if isinstance(node, exp.Func) else node.key.upper()


def _describe_refused_node(node: exp.Expression) -> str:
    if isinstance(node, (exp.Subquery, exp.Select)) or (
        isinstance(node, exp.Query) and not isinstance(node, exp.SetOperation)
    ):
        return f"Subqueries are not allowed in a filter: {_snippet(node)}."
    if isinstance(node, exp.Exists):
        return f"EXISTS (subquery) is not allowed in a filter: {_snippet(node)}."
    if isinstance(node, exp.SetOperation):
        return f"{node.key.upper()} is not allowed in a filter."
    if isinstance(node, (exp.With, exp.CTE)):
        return "Common table expressions (WITH) are not allowed in a filter."
    if isinstance(node, (exp.DDL, exp.DML, exp.Command, exp.Drop, exp.Alter, exp.Use, exp.Set, exp.Grant)):
        return f"{node.key.upper()} is a statement, not a filter condition."
    if isinstance(node, exp.Placeholder):
        shown = f":{node.name}" if node.name else "?"
        return f"The placeholder {shown} is not allowed; bind variables must be written as literal values."
    if isinstance(node, exp.Parameter):
        return f"{_snippet(node)} is not allowed; session variables and stage references are not filters."
    if isinstance(node, exp.Star):
        return "`*` is not allowed in a filter; name each column explicitly."
    if isinstance(node, (exp.JSONExtract, exp.JSONExtractScalar, exp.Bracket, exp.Dot)):
        return f"Path and element access such as {_snippet(node)} is not allowed in a filter."
    if isinstance(node, exp.Window):
        return f"Window functions are not allowed in a filter: {_snippet(node)}."
    if isinstance(node, exp.AggFunc):
        return (
            f"The aggregate function {_function_name(node)}() is not allowed: a filter is evaluated one row "
            "at a time."
        )
    if isinstance(node, exp.Func):
        name = _function_name(node)
        if name.startswith("SYSTEM$"):
            return f"{name}() is not allowed: SYSTEM$ functions act on the account, not on row values."
        return (
            f"The function {name}() is not allowed in a filter. Allowed functions: "
            f"{', '.join(ALLOWED_FUNCTIONS)}."
        )
    return f"{_snippet(node)} ({node.key}) is not allowed in a filter."


def _describe_parse_error(err: ParseError, tokens: list[Token]) -> str:
    first = tokens[0]
    if first.token_type in _STATEMENT_TOKENS or first.text.upper() in {"CALL", "EXECUTE"}:
        return (
            f"The filter starts with {first.text.upper()}, which begins a SQL statement; a filter must be "
            "a single condition such as `amount > 5`."
        )
    info = err.errors[0] if err.errors else {}
    bad = _token_at(tokens, info.get("line"), info.get("col"))
    if bad is not None:
        pos = bad.start + 1
        if bad.token_type in _SET_OPERATION_TOKENS:
            return f"{bad.text.upper()} at character {pos} is not allowed in a filter."
        if bad.token_type in _STATEMENT_TOKENS:
            return (
                f"{bad.text.upper()} at character {pos} is not allowed: a filter is a single condition, "
                "not a query or statement."
            )
        if bad.token_type in _CLAUSE_TOKENS:
            return f"The {bad.text.upper()} clause at character {pos} is not allowed in a filter."
    call = _refused_call(tokens)
    if call is not None:
        return f"The function {call.text.upper()}() at character {call.start + 1} is not allowed in a filter."
    description = str(info.get("description") or err)
    if description.startswith("Required keyword"):
        description = "incomplete expression"
    elif description.startswith("Invalid expression / Unexpected token"):
        description = "unexpected token"
    if bad is not None:
        where = f" at {bad.text!r} (character {bad.start + 1})"
    elif info.get("highlight"):
        where = f" near {info['highlight']!r} (line {info.get('line')}, column {info.get('col')})"
    else:
        where = ""
    return f"The filter is not a valid condition: {description}{where}."


def _token_at(tokens: list[Token], line: object, col: object) -> Token | None:
    for tok in tokens:
        if tok.line == line and tok.col == col:
            return tok
    return None


def _refused_call(tokens: list[Token]) -> Token | None:
    """After a parse failure, name the function the user tried to call if it is not on the list."""
    allowed = set(ALLOWED_FUNCTIONS)
    known = _SNOWFLAKE.parser_class.FUNCTIONS
    for tok, nxt in pairwise(tokens):
        name = tok.text.upper()
        if nxt.token_type != TokenType.L_PAREN or name in allowed:
            continue
        if tok.token_type == TokenType.VAR or name in known:
            return tok
    return None


def _describe_tokenize_failure(text: str) -> str:
    problem = _scan(text)[1]
    if problem is not None:
        pos, what = problem
        if what.startswith("comment"):
            return (
                f"The filter contains a {what} at character {pos + 1} that is never closed; "
                "comments are not allowed."
            )
        return f"Unbalanced quote: the {what} starting at character {pos + 1} is never closed."
    return "The filter could not be read as SQL (unbalanced quotes?)."


def _first_comment(text: str) -> tuple[int, str] | None:
    return _scan(text)[0]


def _scan(text: str) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """Rough lexer used only to word messages: first comment marker, first unterminated literal."""
    i, n = 0, len(text)
    comment: tuple[int, str] | None = None
    while i < n:
        if text.startswith(("--", "//"), i):
            comment = comment or (i, text[i : i + 2])
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            comment = comment or (i, "/*")
            end = text.find("*/", i + 2)
            if end < 0:
                return comment, (i, "comment '/*'")
            i = end + 2
        elif text.startswith("$$", i):
            end = text.find("$$", i + 2)
            if end < 0:
                return comment, (i, "string '$$'")
            i = end + 2
        elif text[i] in "'\"":
            quote = text[i]
            j = i + 1
            while j < n:
                if quote == "'" and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == quote:
                    if j + 1 < n and text[j + 1] == quote:
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                what = "string literal (')" if quote == "'" else 'quoted name (")'
                return comment, (i, what)
            i = j + 1
        else:
            i += 1
    return comment, None
