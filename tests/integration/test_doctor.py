"""`sfduck doctor` against the emulator over HTTP: the verdicts and advice a user gets for a
working account, a role without CREATE STAGE, an account that forbids internal-stage unloads, a
wrong password and an unreachable host, and that nothing is left behind."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import snowflake.connector

from sfduck_core.config import Settings, SnowflakeSettings
from sfduck_core.doctor import FAIL, PASS, SAMPLES, WARN, DoctorReport, run_doctor
from sfduck_emulator.settings import EmulatorSettings
from tests.integration.conftest import env_for, snowflake_settings

ROOT = Path(__file__).resolve().parents[2]
# what the emulator cannot hold (documented in sfduck_emulator): everything else must arrive exactly
EMULATOR_LOSES = ("TIME(9)", "TIMESTAMP_NTZ(9)")
EMULATOR_LACKS = {"NUMBER(38,0)", "GEOGRAPHY", "GEOMETRY", "VECTOR(FLOAT, 3)", "VECTOR(INT, 2)"}


def doctor_settings(sf: SnowflakeSettings, tmp_path: Path, demo: bool) -> Settings:
    return Settings(snowflake=sf, duckdb_path=tmp_path / "sfduck.duckdb", data_dir=tmp_path / "data", demo=demo,
                    lock_timeout_s=5.0)


def run(sf: SnowflakeSettings, tmp_path: Path, demo: bool = True) -> DoctorReport:
    return run_doctor(doctor_settings(sf, tmp_path, demo), lambda: sf)


def by_name(report: DoctorReport) -> dict[str, object]:
    return {c.name: c for c in report.checks}


@pytest.fixture
def account_flag(sf: snowflake.connector.SnowflakeConnection) -> Iterator[Callable[[str], None]]:
    """Set an (emulated) account parameter for one test, unset afterwards whatever happens."""
    names: list[str] = []

    def set_flag(name: str) -> None:
        sf.cursor().execute(f"ALTER ACCOUNT SET {name} = TRUE")
        names.append(name)

    yield set_flag
    for name in names:
        sf.cursor().execute(f"ALTER ACCOUNT UNSET {name}")


def _stage_exists(sf: snowflake.connector.SnowflakeConnection, stage: str) -> bool:
    try:
        sf.cursor().execute(f"LIST @{stage}")
    except snowflake.connector.errors.ProgrammingError:
        return False
    return True


def test_a_working_source_passes_and_leaves_nothing_behind(emulator: EmulatorSettings, tmp_path: Path, sf) -> None:
    report = run(snowflake_settings(emulator), tmp_path)
    checks = by_name(report)
    assert [c.name for c in report.checks] == ["settings", "login", "rights", "round trip", "speed"]
    assert report.ok, report.lines()
    assert checks["settings"].status == PASS and "demo" in checks["settings"].found
    login = checks["login"]
    assert login.status == PASS and "password login" in login.found and "UTC" in login.found
    assert login.details["database"] == emulator.database and login.details["schema"] == emulator.schema
    rights = checks["rights"]
    assert rights.status == PASS and rights.details["auto_transport"] == "stage"
    assert rights.details["tables"] >= 1 and rights.details["select_denied"] == []
    assert "PREVENT_UNLOAD_TO_INTERNAL_STAGES = false" in rights.found

    trip = checks["round trip"]
    runs = trip.details["runs"]
    assert [(r["requested"], r["transport"]) for r in runs] == [("auto", "stage"), ("arrow", "arrow")]
    assert set(trip.details["refused_types"]) == EMULATOR_LACKS
    for r in runs:  # every value of every other type came back exactly, through both transports
        assert "error" not in r
        assert r["mismatches"] and all(m.startswith(EMULATOR_LOSES) for m in r["mismatches"]), r["mismatches"]
        assert r["local_files_deleted"] is True
    assert trip.details["types"] == len(SAMPLES) - len(EMULATOR_LACKS)
    assert trip.status == WARN and "emulator" in trip.advice  # demo mode: the emulator's known limits
    assert runs[0]["stage_dropped"] is True and not _stage_exists(sf, runs[0]["stage"])
    assert trip.details["left_behind"] == [] and "nothing left behind" in trip.found
    assert not any(p.name.startswith("doctor") for p in (tmp_path / "data").rglob("*"))
    assert not (tmp_path / "sfduck.duckdb").exists()  # the user's database is never touched

    speed = checks["speed"]
    assert speed.status == PASS and speed.details["first_row_s"] is not None and "download" in speed.found


def test_an_account_is_held_to_exact_values(emulator: EmulatorSettings, tmp_path: Path) -> None:
    """The same emulator as an account: lost nanoseconds are a failure with advice, exit code 1."""
    report = run(snowflake_settings(emulator), tmp_path, demo=False)
    trip = by_name(report)["round trip"]
    assert trip.status == FAIL and not report.ok
    assert "TIME(9) row 0: sent '12:34:56.123456789', got '12:34:56.123456'" in trip.found
    assert "--exclude-columns" in trip.advice


@pytest.mark.parametrize(
    ("flag", "found", "advice", "fallback"),
    [  # a role without CREATE STAGE; an account that forbids unloads to internal stages
        ("SFDUCK_DENY_CREATE_STAGE", "CREATE STAGE refused (Snowflake error while creating a temporary stage: "
         "003001 (42501): SQL access control error: Insufficient privileges", "GRANT CREATE STAGE",
         "stage unavailable"),
        ("PREVENT_UNLOAD_TO_INTERNAL_STAGES", "CREATE STAGE granted; unload refused", "PREVENT_UNLOAD_TO_INTERNAL_STAGES",
         "unload refused"),
    ],
)
def test_a_refused_stage_step_predicts_and_gets_arrow(emulator: EmulatorSettings, tmp_path: Path, sf, account_flag,
                                                      flag: str, found: str, advice: str, fallback: str) -> None:
    account_flag(flag)
    report = run(snowflake_settings(emulator), tmp_path)
    checks = by_name(report)
    rights = checks["rights"]
    assert rights.status == WARN and rights.details["auto_transport"] == "arrow"
    assert found in rights.found and advice in rights.advice
    assert rights.details["prevent_unload_to_internal_stages"] == ("true" if flag.startswith("PREVENT") else "false")
    runs = checks["round trip"].details["runs"]
    assert [r["transport"] for r in runs] == ["arrow"]  # `auto` did what the rights check predicted
    assert runs[0]["fallback_reason"].startswith(fallback)
    if runs[0].get("stage"):
        assert runs[0]["stage_dropped"] is True and not _stage_exists(sf, runs[0]["stage"])
    assert report.ok  # arrow works: a warning, not a failure


def test_a_wrong_password_fails_fast_with_advice_and_no_secret(emulator: EmulatorSettings, tmp_path: Path) -> None:
    wrong = "not-the-password-" + "x" * 8
    started = time.monotonic()
    report = run(snowflake_settings(emulator, password=wrong), tmp_path, demo=False)
    elapsed = time.monotonic() - started
    login = by_name(report)["login"]
    assert login.status == FAIL and "incorrect username or password" in login.found
    assert "SNOWFLAKE_PASSWORD" in login.advice
    assert [c.status for c in report.checks[2:]] == [FAIL, FAIL, FAIL]
    assert all("not run" in c.found for c in report.checks[2:])
    assert wrong not in json.dumps(report.as_dict()) and wrong not in "\n".join(report.lines())
    assert not report.ok and elapsed < 20


def test_an_unreachable_host_fails_fast_with_advice(emulator: EmulatorSettings, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sf = dataclasses.replace(snowflake_settings(emulator), port=port, login_timeout=3, network_timeout=3)
    started = time.monotonic()
    report = run(sf, tmp_path, demo=False)
    elapsed = time.monotonic() - started
    login = by_name(report)["login"]
    assert login.status == FAIL and "Cannot reach Snowflake" in login.found
    assert "SNOWFLAKE_ACCOUNT" in login.advice and "SNOWFLAKE_LOGIN_TIMEOUT" in login.advice
    assert not report.ok and elapsed < 20


def test_a_role_not_in_effect_is_named(emulator: EmulatorSettings, tmp_path: Path) -> None:
    """(The emulator creates missing databases and schemas on login, so a role stands in for them.)"""
    report = run(snowflake_settings(emulator, role="SFDUCK_READER"), tmp_path)
    login = by_name(report)["login"]
    assert login.status == FAIL and "SNOWFLAKE_ROLE=SFDUCK_READER but the session uses" in login.found
    assert "USAGE" in login.advice
    assert by_name(report)["rights"].status == PASS  # the session still served the other checks


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sfduck_core", "doctor", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_cli_exit_codes_and_output(emulator: EmulatorSettings, tmp_path: Path) -> None:
    demo_env = {k: v for k, v in env_for(emulator, tmp_path).items() if not k.startswith("SNOWFLAKE_")}
    demo_env["SFDUCK_USERS_FILE"] = str(tmp_path / "no-users.yaml")
    ok = cli(demo_env, "--json")  # demo mode: the embedded emulator of the subprocess
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True
    assert [c["check"] for c in report["checks"]] == ["settings", "login", "rights", "round trip", "speed"]
    assert "SFDUCK_DUCKDB_PATH" in report["checks"][0]["details"]["sources"]["environment"]
    assert "Traceback" not in ok.stderr

    env = env_for(emulator, tmp_path)
    env["SNOWFLAKE_PASSWORD"] = "wrong-password-123"
    bad = cli(env)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("PASS  settings: mode account") and "SNOWFLAKE_PASSWORD" in lines[0]
    assert lines[1].startswith("FAIL  login: password login") and lines[2].startswith("      -> Check SNOWFLAKE_USER")
    assert "wrong-password-123" not in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
