"""The shape the brief asks for: pages are thin and hold no SQL; identifiers are quoted in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"(?is)\b(select\s.+\bfrom|insert\s+into|delete\s+from|update\s+\S+\s+set|create\s+table|"
                 r"drop\s+table|alter\s+table)\b")


def string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_pages_and_ui_glue_hold_no_sql() -> None:
    files = [ROOT / "streamlit_app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "sfduck_ui").glob("*.py"))]
    assert len(files) >= 7
    offenders = {f.name: s for f in files for s in string_constants(f) if SQL.search(s)}
    assert offenders == {}


def test_the_detector_recognises_sql() -> None:
    assert SQL.search('SELECT * FROM "S"."T" LIMIT 5') and SQL.search("delete from t where x")
    assert not SQL.search("Read-only: one SELECT (or SUMMARIZE/DESCRIBE), at most 1,000 rows")


def test_identifiers_are_quoted_by_one_helper() -> None:
    doubled = re.compile(r"""replace\(\s*['"]\\?"['"]\s*,\s*['"]\\?"\\?"['"]\s*\)""")
    hits = [p.relative_to(ROOT).as_posix() for p in sorted(ROOT.glob("sfduck_*/*.py")) + sorted(ROOT.glob("pages/*.py"))
            if doubled.search(p.read_text(encoding="utf-8"))]
    assert hits == ["sfduck_core/sqlident.py"]
