"""Suggestions for a mistyped name: Snowflake names are case-sensitive as stored (ORDERS, "Mixed
Case"), so `orders` is unknown; the error then says which name was meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """` Did you mean ORDERS?` when a candidate differs only in case (else when one is close), or ''."""
    known = [c for c in candidates if c != name]
    same = [c for c in known if c.casefold() == name.casefold()]
    close = same or difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return f" Did you mean {close[0]}?" if close else ""
