"""The doctor's pieces that need no Snowflake: where settings came from (never a secret's value),
the verdict rendering and exit rule, `auto`'s fallback rule, and the generated literals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sfduck_core import doctor
from sfduck_core.config import load_settings
from sfduck_core.doctor import (
    FAIL,
    PASS,
    SAMPLES,
    WARN,
    Check,
    DoctorReport,
    check_settings,
    literal_description,
    literal_relation,
)
from sfduck_core.errors import SourceError
from sfduck_core.transfer import STAGE_UNAVAILABLE, UNLOAD_REFUSED, arrow_instead
from sfduck_core.typemap import Encoding


def test_settings_name_their_source_and_never_a_secret(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[connections.snowflake]\nuser = "u"\npassword = "pw-from-secrets"\nrole = "R"\n')
    dotenv = tmp_path / ".env"
    dotenv.write_text("SNOWFLAKE_WAREHOUSE=WH\nSFDUCK_DATA_DIR=downloads\n")
    settings = load_settings(env={"SNOWFLAKE_ACCOUNT": "acme-xy"}, dotenv_path=dotenv, secrets_path=secrets)
    origins = dict(settings.origins)
    assert origins["SNOWFLAKE_ACCOUNT"] == "environment"
    assert origins["SNOWFLAKE_WAREHOUSE"] == origins["SFDUCK_DATA_DIR"] == f".env ({dotenv.resolve()})"
    assert origins["SNOWFLAKE_PASSWORD"] == origins["SNOWFLAKE_USER"] == f"secrets file ({secrets.resolve()})"
    assert "SNOWFLAKE_SCHEMA" not in origins  # only what was given
    check = check_settings(settings)
    text = check.found + str(check.as_dict())
    assert "pw-from-secrets" not in text
    assert "SNOWFLAKE_PASSWORD" in text and "account acme-xy" in text and "free" in text
    assert check.status in (PASS, WARN)


def test_storage_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env={"SFDUCK_DUCKDB_PATH": str(tmp_path / "db.duckdb")},
                             dotenv_path=tmp_path / "none", secrets_path=tmp_path / "none.toml")
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda _: SimpleNamespace(free=200 << 20))
    low = check_settings(settings)
    assert low.status == WARN and "200.0 MB free" in low.found and "SFDUCK_DATA_DIR" in low.advice
    monkeypatch.setattr(doctor.os, "access", lambda *_: False)
    unwritable = check_settings(settings)
    assert unwritable.status == FAIL and "not writable" in unwritable.found


def test_a_lake_target_is_checked_where_it_lives(tmp_path: Path) -> None:
    """The lake's catalog folder and data folder instead of the unused DuckDB file; a PostgreSQL
    catalog that cannot be reached fails, its password never shown, and nothing is created."""
    paths = {"dotenv_path": tmp_path / "none", "secrets_path": tmp_path / "none.toml"}
    lake = load_settings(env={"SFDUCK_TARGET": f"ducklake:sqlite:{tmp_path / 'lake' / 'c.sqlite'}",
                              "SFDUCK_LAKE_DATA_PATH": str(tmp_path / "lake" / "data")}, **paths)
    check = check_settings(lake)
    assert check.status in (PASS, WARN) and "target DuckLake (sqlite catalog" in check.found
    assert "lake catalog" in check.found and "lake data" in check.found and "DuckDB file" not in check.found
    closed = load_settings(env={"SFDUCK_TARGET": "ducklake:postgres:host=127.0.0.1 port=1 dbname=x user=u "
                                                 "password=pg-secret-1", "SFDUCK_LAKE_DATA_PATH": str(tmp_path / "d")},
                           **paths)
    check = check_settings(closed)
    assert check.status == FAIL and "PostgreSQL catalog cannot be reached" in check.found
    assert "pg-secret-1" not in check.found + str(check.as_dict())
    assert not (tmp_path / "lake").exists() and not (tmp_path / "d").exists()


def test_report_lines_and_exit_rule() -> None:
    report = DoctorReport([Check("settings", PASS, "fine", "never shown"), Check("rights", WARN, "arrow", "grant it"),
                           Check("login", FAIL, "refused", "check the password")])
    assert report.lines() == ["PASS  settings: fine", "WARN  rights: arrow", "      -> grant it",
                              "FAIL  login: refused", "      -> check the password"]
    assert not report.ok
    assert DoctorReport([Check("rights", WARN, "arrow", "grant it")]).ok  # warnings do not fail a script
    assert report.as_dict()["checks"][2] == {"check": "login", "status": FAIL, "found": "refused",
                                              "advice": "check the password", "seconds": 0.0, "details": {}}


def test_auto_falls_back_only_on_a_refusal() -> None:
    refused = SourceError("Insufficient privileges", refused=True)
    assert arrow_instead("auto", STAGE_UNAVAILABLE, refused) == "stage unavailable, used arrow: Insufficient privileges"
    assert arrow_instead("auto", UNLOAD_REFUSED, refused).startswith("unload refused, used arrow")
    with pytest.raises(SourceError):
        arrow_instead("stage", STAGE_UNAVAILABLE, refused)  # stage means stage or nothing
    with pytest.raises(SourceError):
        arrow_instead("auto", STAGE_UNAVAILABLE, SourceError("HTTP 503"))  # an outage: no switch


def test_literals_cover_the_type_map_with_nulls_and_escaping() -> None:
    relation, rows = literal_relation(SAMPLES)
    assert rows == max(len(s.values) for s in SAMPLES) + 1 and relation.count(" UNION ALL ") == rows - 1
    assert "CAST(NULL AS TIMESTAMP_TZ(9))" in relation  # every column's last row is NULL
    assert "'quote '' double \" backslash \\\\ tab" in relation  # quote doubled, backslash escaped
    desc = literal_description("S", SAMPLES)
    assert desc.relation == relation and desc.plans[0].name == "ROW_ID"
    mapped = {p.duckdb_type for p in desc.plans}
    assert {"BIGINT", "HUGEINT", "DECIMAL(38,9)", "DOUBLE", "VARCHAR", "BLOB", "BOOLEAN", "DATE", "TIME", "TIME_NS",
            "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMPTZ", "JSON", "FLOAT[3]", "INTEGER[2]"} <= mapped
    assert {p.mapping.encoding for p in desc.plans} == set(Encoding)  # every way across is exercised
    assert all(p.mapping.known for p in desc.plans)
