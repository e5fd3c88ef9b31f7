"""`sfduck reader`'s text: what the README shows is what the code prints, and no password or key
is ever in it (the offline run of these lines is tests/integration/test_reader.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from sfduck_core.config import Target, parse_target
from sfduck_core.reader import FORMS, PASSWORD_PLACEHOLDER, reader_text

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = Target("ducklake", catalog="sqlite", catalog_location="/srv/sfduck/lake.sqlite",
                 data_path="/srv/sfduck/lake-data/")


def test_the_readme_shows_what_sfduck_reader_prints() -> None:
    assert reader_text(EXAMPLE, "python", "SALES", "ORDERS") in README.read_text()


def test_a_postgres_password_is_a_placeholder_in_every_form() -> None:
    target = parse_target("ducklake:postgres:dbname=lake host=db user=sfduck password=s3cret-Pw", "s3://b/p/", Path)
    for form in FORMS:
        text = reader_text(target, form, "S", "T")
        assert "s3cret-Pw" not in text and PASSWORD_PLACEHOLDER in text, form
        assert "PGPASSWORD" in text and "CREATE SECRET" in text


def test_every_form_pins_the_duckdb_that_wrote_the_data(tmp_path: Path) -> None:
    for target in (EXAMPLE, Target("duckdb", path=tmp_path / "x.duckdb")):
        for form in FORMS:
            text = reader_text(target, form)
            assert f"duckdb=={duckdb.__version__}" in text or f"DuckDB {duckdb.__version__}" in text, (form, text)
            if form != "cli":  # the CLI form loads by name after import_extension put the files in place
                assert "INSTALL " not in text and "LOAD ducklake" not in text, (form, text)
