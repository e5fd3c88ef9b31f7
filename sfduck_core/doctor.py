"""`sfduck doctor`: prove that a Snowflake account works before the first sync.

Nobody can test sfduck against a real account before a user does, so the first account it meets
is a user's. What differs from the emulator (a grant, an account parameter, a network path, a
type's unload format) should show here in a minute, with a verdict and what to do, rather than in
a failed sync of a big table. Every check leaves nothing behind: the only objects created in
Snowflake are temporary stages, dropped at once (and gone with the session anyway), and the local
files live in one folder that is removed before the report is returned.

The round trip goes through the code a sync uses (`SnowflakeSource`, `Transfer` and the type map's
projections and casts) on a SELECT of literals generated from the type map, never from user text.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sfduck_core.config import Settings, SnowflakeSettings
from sfduck_core.errors import SfduckError, SourceError
from sfduck_core.source import SnowflakeSource, SourceColumn, TableDescription
from sfduck_core.sqlident import qualified, quote_ident
from sfduck_core.storage import open_storage
from sfduck_core.store import Store
from sfduck_core.transfer import (
    STAGE_UNAVAILABLE,
    UNLOAD_REFUSED,
    Transfer,
    TransferResult,
    arrow_instead,
    existing_parent,
    human_bytes,
)
from sfduck_core.typemap import ColumnPlan, plan_columns

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
LOW_FREE_SPACE = 1 << 30  # below this a sync of any real table is likely to stop for lack of space
MAX_PROBED_TABLES = 20  # SELECT is tried on this many tables: enough to see a missing grant, quick
UTC_NAMES = {"UTC", "ETC/UTC", "GMT", "ETC/GMT", "Z"}
_SECRET_SETTINGS = {"SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_FILE_PWD"}


@dataclass
class Check:
    """One verdict: what was found and, unless it passed, what to do."""

    name: str
    status: str
    found: str
    advice: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "found": self.found, "advice": self.advice,
                "seconds": round(self.seconds, 3), "details": self.details}


@dataclass
class DoctorReport:
    checks: list[Check]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Exit 0 when nothing failed (warnings are worth reading, not worth failing a script)."""
        return all(c.status != FAIL for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 3), "checks": [c.as_dict() for c in self.checks]}

    def lines(self) -> list[str]:
        """The human form: `STATUS  check: found`, and advice indented below what did not pass."""
        out = []
        for c in self.checks:
            out.append(f"{c.status}  {c.name}: {c.found}")
            if c.advice and c.status != PASS:
                out.append(f"      -> {c.advice}")
        return out


# --- the literals of the round trip ---------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """Values of one Snowflake type: `values` are the intended values (typical first, then the
    extremes), `make` turns a Snowflake string literal into the type, `expected` (when given) is
    what DuckDB must hold, as a value DuckDB casts to the target type."""

    snowflake_type: str
    values: tuple[str, ...]
    make: str = "CAST({} AS {type})"
    expected: tuple[Any, ...] | None = None

    def expected_values(self) -> tuple[Any, ...]:
        return self.expected if self.expected is not None else self.values


_JSON_DOC = '{"a":[1,2.5,"x",null,true],"b":{"c":"\u00fc"}}'
# One sample per row of the exact type map (README, snowflake-facts.md), with extremes and NULLs
# (every column's last row is NULL). Values are constants of this module, never user input.
SAMPLES: tuple[Sample, ...] = (
    Sample("NUMBER(18,0)", ("42", "-999999999999999999", "999999999999999999")),
    Sample("NUMBER(38,0)", ("12345", "-99999999999999999999999999999999999999",
                            "99999999999999999999999999999999999999")),
    Sample("NUMBER(38,9)", ("3.141592653", "-99999999999999999999999999999.999999999",
                            "99999999999999999999999999999.999999999")),
    Sample("NUMBER(10,2)", ("0.01", "-99999999.99", "99999999.99")),
    Sample("FLOAT", ("1.5", "-1.7976931348623157e308", "1.7976931348623157e308", "2.2250738585072014e-308",
                     "inf", "-inf", "NaN")),
    Sample("VARCHAR", ("sfduck", "", "quote ' double \" backslash \\ tab \t newline \n end",
                       "\u00fcn\u00efc\u00f6d\u00e9 \u2603 \U0001d11e \u4e2d\u6587")),
    Sample("BINARY", ("DEADBEEF", "", "00FF"), make="TO_BINARY({}, 'HEX')",
           expected=(bytes.fromhex("DEADBEEF"), b"", bytes.fromhex("00FF"))),
    Sample("BOOLEAN", ("TRUE", "FALSE")),
    Sample("DATE", ("2024-02-29", "0001-01-01", "9999-12-31")),
    Sample("TIME(0)", ("12:34:56", "00:00:00", "23:59:59")),
    Sample("TIME(9)", ("12:34:56.123456789", "00:00:00", "23:59:59.999999999")),
    Sample("TIMESTAMP_NTZ(6)", ("2024-02-29 12:34:56.123456", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999")),
    Sample("TIMESTAMP_NTZ(9)", ("2024-02-29 12:34:56.123456789", "1677-09-22 00:00:00.000000001",
                                "2262-04-10 23:59:59.999999999")),  # TIMESTAMP_NS's range
    Sample("TIMESTAMP_LTZ(9)", ("2024-02-29T12:34:56.123456-08:00", "0001-01-01T00:00:00+00:00",
                                "9999-12-31T23:59:59.999999+00:00")),
    Sample("TIMESTAMP_TZ(9)", ("2024-02-29T12:34:56.123456+05:30", "1900-01-01T00:00:00-12:00",
                               "9999-12-30T23:59:59.999999+14:00")),
    Sample("VARIANT", (_JSON_DOC, "null", '"text"', "123456789012345678"), make="PARSE_JSON({})"),
    Sample("OBJECT", ('{"k":1,"s":"v"}', "{}"), make="PARSE_JSON({})::OBJECT"),
    Sample("ARRAY", ('[1,"two",[3]]', "[]"), make="PARSE_JSON({})::ARRAY"),
    Sample("GEOGRAPHY", ("POINT(-122.35 37.55)",), make="TO_GEOGRAPHY({})",
           expected=('{"type":"Point","coordinates":[-122.35,37.55]}',)),
    Sample("GEOMETRY", ("POINT(1 2)",), make="TO_GEOMETRY({})",
           expected=('{"type":"Point","coordinates":[1,2]}',)),
    Sample("VECTOR(FLOAT, 3)", ("[1.5,-2.25,0]",), make="PARSE_JSON({})::ARRAY::VECTOR(FLOAT, 3)"),
    Sample("VECTOR(INT, 2)", ("[1,-2]",), make="PARSE_JSON({})::ARRAY::VECTOR(INT, 2)"),
)
ROW_ID = "ROW_ID"


def _snowflake_string(text: str) -> str:
    """A Snowflake string literal of a constant of this module (backslash is an escape there)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def column_name(sample: Sample) -> str:
    return sample.snowflake_type


def literal_relation(samples: tuple[Sample, ...]) -> tuple[str, int]:
    """(a derived table of literals: one column per type, one row per value plus a NULL row,
    the number of rows). `UNION ALL` of typed SELECTs: every value carries its column's type."""
    rows = max(len(s.values) for s in samples) + 1
    selects = []
    for row in range(rows):
        items = [f"{row} AS {quote_ident(ROW_ID)}"]
        for s in samples:
            value = (s.make.format(_snowflake_string(s.values[row]), type=s.snowflake_type)
                     if row < len(s.values) else f"CAST(NULL AS {s.snowflake_type})")
            items.append(f"{value} AS {quote_ident(column_name(s))}")
        selects.append("SELECT " + ", ".join(items))
    return "(" + " UNION ALL ".join(selects) + ")", rows


def literal_description(schema: str, samples: tuple[Sample, ...]) -> TableDescription:
    """The literals as a table a sync could have described, so that the transports treat them alike."""
    relation, _ = literal_relation(samples)
    described = [(ROW_ID, "NUMBER(9,0)"), *((column_name(s), s.snowflake_type) for s in samples)]
    columns = tuple(SourceColumn(name, type_text, True) for name, type_text in described)
    return TableDescription(schema, "SFDUCK_DOCTOR_LITERALS", columns, (), tuple(plan_columns(described)),
                            relation=relation)


def _is_json(plan: ColumnPlan) -> bool:
    return plan.duckdb_type == "JSON" or plan.snowflake_type.name in ("GEOGRAPHY", "GEOMETRY")


def compare_loaded(con: duckdb.DuckDBPyConnection, table: str, samples: tuple[Sample, ...],
                   plans: tuple[ColumnPlan, ...]) -> list[str]:
    """Every value in the loaded table against what was sent, as DuckDB reads both; JSON is
    compared as parsed documents (Snowflake may reorder keys or respell numbers)."""
    by_name = {p.name: p for p in plans}
    mismatches = []
    for s in samples:
        plan = by_name[column_name(s)]
        col = quote_ident(plan.name)
        got = dict(con.execute(f"SELECT {quote_ident(ROW_ID)}, CAST({col} AS VARCHAR) FROM {table}").fetchall())
        for row in range(max(got) + 1 if got else 0):
            want_value = s.expected_values()[row] if row < len(s.values) else None
            want = None if want_value is None else con.execute(
                f"SELECT CAST(CAST(? AS {plan.duckdb_type}) AS VARCHAR)", [want_value]).fetchone()[0]
            have = got.get(row)
            try:
                same = (json.loads(have) == json.loads(want)
                        if _is_json(plan) and have is not None and want is not None else have == want)
            except ValueError:  # not JSON at all: certainly not what was sent
                same = False
            if not same:
                mismatches.append(f"{s.snowflake_type} row {row}: sent {want!r}, got {have!r}")
    return mismatches


# --- running the checks ---------------------------------------------------------------------

SnowflakeProvider = Callable[[], SnowflakeSettings]


class _Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.start


def run_doctor(settings: Settings, snowflake: SnowflakeProvider) -> DoctorReport:
    """All checks, in order; a check that needs a session is reported as not run without one."""
    clock = _Timer()
    checks = [check_settings(settings)]
    src: SnowflakeSource | None = None
    try:
        login, src = check_login(snowflake)
        checks.append(login)
        if src is None:
            for name in ("rights", "round trip", "speed"):
                checks.append(Check(name, FAIL, "not run: no Snowflake session",
                                    "Fix the login and session check first."))
        else:
            rights, predicted = check_rights(src)
            checks.append(rights)
            trip, timings = check_round_trip(settings, src, predicted)
            checks.append(trip)
            checks.append(check_speed(src, timings, login.details.get("login_s")))
    finally:
        if src is not None:
            src.close()
    return DoctorReport(checks, clock.seconds)


def unusable_settings(exc: SfduckError) -> DoctorReport:
    """Settings that cannot even be read (an account without credentials, a bad number) are the
    first check's failure, not a crash before any check."""
    return DoctorReport([Check("settings", FAIL, str(exc), "Fix the setting named above (environment, .env or "
                               ".streamlit/secrets.toml), then run `sfduck doctor` again.")])


def _origins_text(settings: Settings) -> tuple[str, dict[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for name, origin in settings.origins:
        grouped.setdefault(origin, []).append(name)
    text = "; ".join(f"{', '.join(names)} from {origin}" for origin, names in grouped.items())
    return text or "nothing configured (defaults only)", grouped


def check_settings(settings: Settings) -> Check:
    """Which source supplied which setting (names only: a secret's value never leaves its source),
    the mode, and where the data will go with the free space there."""
    clock = _Timer()
    origins, grouped = _origins_text(settings)
    mode = "demo (embedded emulator)" if settings.demo else f"account {settings.snowflake.account}"
    places: dict[str, int] = {}
    problems = []
    target = settings.storage
    storage = open_storage(target)
    folders = [*storage.local_places(), ("downloads", str(settings.data_dir), settings.data_dir)]
    problems.extend(storage.unreachable())
    for label, path, folder in folders:
        existing = existing_parent(folder)
        places[f"{label} {path}"] = shutil.disk_usage(existing).free
        if not os.access(existing, os.W_OK):
            problems.append(f"{existing} is not writable")
    key_file = settings.snowflake.private_key_file
    if key_file and not os.access(key_file, os.R_OK):
        problems.append(f"SNOWFLAKE_PRIVATE_KEY_FILE {key_file} cannot be read")
    free_text = ", ".join(f"{where} ({human_bytes(free)} free)" for where, free in places.items())
    found = f"mode {mode}; {origins}; target {target.describe()}; {free_text}"
    details = {"mode": "demo" if settings.demo else "account", "sources": grouped,
               "duckdb_path": str(settings.duckdb_path), "data_dir": str(settings.data_dir),
               "free_bytes": places}
    if problems:
        return Check("settings", FAIL, f"{found}; {'; '.join(problems)}",
                     "Point SFDUCK_DUCKDB_PATH (or SFDUCK_TARGET and SFDUCK_LAKE_DATA_PATH) and SFDUCK_DATA_DIR at "
                     "folders this user can write, a PostgreSQL catalog at a server it can reach, and "
                     "SNOWFLAKE_PRIVATE_KEY_FILE (if set) at a key file it can read.",
                     details, clock.seconds)
    if min(places.values()) < LOW_FREE_SPACE:
        return Check("settings", WARN, found,
                     "Less than 1 GB is free: a sync needs about 1.5x the table's size for its download and its "
                     "new DuckDB copy. Free some space or point SFDUCK_DATA_DIR / SFDUCK_DUCKDB_PATH at a larger disk.",
                     details, clock.seconds)
    return Check("settings", PASS, found, None, details, clock.seconds)


def auth_method(sf: SnowflakeSettings) -> str:
    if sf.authenticator and sf.authenticator.lower() not in ("snowflake", ""):
        return "external browser" if sf.authenticator.lower() == "externalbrowser" else sf.authenticator
    if sf.private_key_file:
        return "key pair"
    return "password"


def _login_advice(message: str) -> str:
    if "refused the login" in message:
        return ("Check SNOWFLAKE_USER and SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY_FILE); the settings check "
                "above says which file supplied them.")
    if "Cannot reach" in message:
        return ("Check SNOWFLAKE_ACCOUNT (e.g. orgname-account or xy12345.eu-west-1) or SNOWFLAKE_HOST/PORT, and "
                "that this machine reaches it over HTTPS (proxy, firewall, private link). "
                "SNOWFLAKE_LOGIN_TIMEOUT bounds the wait.")
    return "Fix the settings named in the message, then run `sfduck doctor` again."


def _schema_visible(src: SnowflakeSource) -> bool:
    """Whether the configured schema shows in its database (a missing database is refused, not
    an outage: the schema is then not visible either)."""
    sf = src.settings
    if not (sf.database and sf.schema):
        return True
    try:
        return src.schema_exists(sf.schema)
    except SourceError as exc:
        if not exc.refused:
            raise
        return False


def check_login(snowflake: SnowflakeProvider) -> tuple[Check, SnowflakeSource | None]:
    """Log in as a sync does, then see which role, warehouse, database and schema are really in
    effect (Snowflake logs in even when a configured one is missing, leaving it NULL)."""
    clock = _Timer()
    try:
        sf = snowflake()
    except SfduckError as exc:
        return Check("login", FAIL, str(exc), "Configure SNOWFLAKE_ACCOUNT, or install the emulator for demo mode.",
                     seconds=clock.seconds), None
    method = auth_method(sf)
    src = SnowflakeSource(sf)
    try:
        src.connect()
    except SfduckError as exc:
        return Check("login", FAIL, f"{method} login: {exc}", _login_advice(str(exc)),
                     {"auth_method": method}, clock.seconds), None
    login_s = clock.seconds
    try:
        context = src.session_context()
        time_zone = src.parameter("TIMEZONE")
        schema_ok = _schema_visible(src)
    except SfduckError as exc:
        src.close()
        return Check("login", FAIL, f"{method} login worked, then: {exc}", _login_advice(str(exc)),
                     {"auth_method": method}, clock.seconds), None
    problems, notes = [], []
    for name in ("role", "warehouse", "database", "schema"):
        configured = getattr(sf, name)
        if name not in context:
            notes.append(f"{name} {configured or '-'} (the source cannot tell)")
            continue
        current = context[name]
        notes.append(f"{name} {current or '-'}")
        env = f"SNOWFLAKE_{name.upper()}"
        if configured and not current:
            problems.append(f"{env}={configured} does not exist or this role may not use it")
        elif configured and current and configured.strip('"').upper() != str(current).upper():
            problems.append(f"{env}={configured} but the session uses {current}")
        elif not current and name in ("warehouse", "database"):
            problems.append(f"no {name} in effect: set {env}")
    if context.get("schema") and not schema_ok:
        problems.append(f"schema {sf.schema} is not visible in database {sf.database}")
    if not sf.schema:
        notes.append("no SNOWFLAKE_SCHEMA: commands need a schema argument")
    tz_ok = str(time_zone or "").upper() in UTC_NAMES
    found = f"{method} login as {sf.user} in {login_s:.2f} s; " + ", ".join(notes) + f"; session time zone {time_zone}"
    details = {"auth_method": method, "user": sf.user, "login_s": round(login_s, 3), **context,
               "time_zone": time_zone}
    if problems:  # the session still tells the other checks something
        return Check("login", FAIL, f"{found}; {'; '.join(problems)}",
                     "Grant the role USAGE on the warehouse, database and schema (README: Connecting to a real "
                     "Snowflake account), or fix the names.", details, clock.seconds), src
    if not tz_ok:
        return Check("login", FAIL, found, "sfduck sets TIMEZONE = 'UTC' for its session; something overrides it "
                     "(a user-level parameter that cannot be changed?): timestamps would shift.", details,
                     clock.seconds), src
    return Check("login", PASS, found, None, details, clock.seconds), src


def check_rights(src: SnowflakeSource) -> tuple[Check, str]:
    """SELECT on the schema's tables, CREATE STAGE, and the account parameters that choose the
    transport; the transport `auto` will use is decided by the sync's own rule (`arrow_instead`)."""
    clock = _Timer()
    schema = src.settings.schema
    if not schema:
        return Check("rights", FAIL, "no schema configured", "Set SNOWFLAKE_SCHEMA.", seconds=clock.seconds), "arrow"
    problems, notes, details = [], [], {}
    try:
        tables = src.list_tables(schema)
    except SfduckError as exc:
        return Check("rights", FAIL, str(exc), "Grant USAGE on the schema and SELECT on its tables.",
                     seconds=clock.seconds), "arrow"
    probed = tables[:MAX_PROBED_TABLES]
    denied = []
    for table in probed:
        try:
            src.probe_select(schema, table.table_name)
        except SourceError as exc:
            if not exc.refused:
                return Check("rights", FAIL, str(exc), "Check the network, then run the doctor again.",
                             seconds=clock.seconds), "arrow"
            denied.append(table.table_name)
    readable = len(probed) - len(denied)
    notes.append(f"SELECT works on {readable} of {len(probed)} tables tried ({len(tables)} in {schema})")
    details.update(tables=len(tables), probed=len(probed), select_denied=denied)
    if not tables:
        problems.append("no tables visible")
    elif denied:
        problems.append(f"SELECT refused on {', '.join(denied[:3])}{' ...' if len(denied) > 3 else ''}")
    try:  # what the account says, when this role may read it; the unload probe below is the proof
        prevent = src.parameter("PREVENT_UNLOAD_TO_INTERNAL_STAGES", "ACCOUNT")
    except SourceError as exc:
        if not exc.refused:
            return Check("rights", FAIL, str(exc), "Check the network, then run the doctor again.",
                         details, clock.seconds), "arrow"
        prevent = None
    details["prevent_unload_to_internal_stages"] = prevent if prevent is not None else "unreadable"
    reason = None
    stage_note = "CREATE STAGE granted"
    unload_note = ("unloads to internal stages allowed (PREVENT_UNLOAD_TO_INTERNAL_STAGES "
                   f"{'= ' + prevent if prevent is not None else 'unreadable by this role'})")
    try:
        try:
            stage = src.create_temp_stage(schema)
        except SourceError as exc:
            reason = arrow_instead("auto", STAGE_UNAVAILABLE, exc)
            stage_note = f"CREATE STAGE refused ({exc})"
            unload_note = "unloads not tried (no stage)"
        else:
            try:
                optimisation = src.disable_unload_type_optimization()
                details["unload_type_optimization"] = "off" if optimisation is None else f"cannot change: {optimisation}"
                if optimisation is not None:
                    notes.append("ENABLE_UNLOAD_PHYSICAL_TYPE_OPTIMIZATION cannot be turned off (the load's casts "
                                 "cover it)")
                src.unload(stage, f"doctor_{uuid.uuid4().hex}", f"SELECT 1 AS {quote_ident('C0')}")
            except SourceError as exc:
                reason = arrow_instead("auto", UNLOAD_REFUSED, exc)
                unload_note = f"unload refused ({exc})"
            finally:
                src.drop_stage(stage)
    except SourceError as exc:  # not a refusal: an outage, which no transport survives
        return Check("rights", FAIL, f"{'; '.join(notes)}; {exc}", "Check the network, then run the doctor again.",
                     details, clock.seconds), "arrow"
    predicted = "stage" if reason is None else "arrow"
    details.update(create_stage=stage_note, unload=unload_note, auto_transport=predicted, fallback_reason=reason)
    found = f"{'; '.join(notes)}; {stage_note}; {unload_note}; `auto` will use {predicted}"
    if problems and not readable:
        return Check("rights", FAIL, f"{found}; {'; '.join(problems)}",
                     f"GRANT SELECT ON ALL TABLES IN SCHEMA <db>.{schema} TO ROLE {src.settings.role or '<role>'} "
                     "(and USAGE on the database and schema).", details, clock.seconds), predicted
    if problems or reason:
        advice = []
        if problems:
            advice.append(f"{'; '.join(problems)}: grant SELECT on the tables you want to sync")
        if reason:
            advice.append("syncs will use the arrow transport (fine, often slower for big tables); for the stage "
                          f"transport GRANT CREATE STAGE ON SCHEMA <db>.{schema} and ask an account admin about "
                          "PREVENT_UNLOAD_TO_INTERNAL_STAGES")
        return Check("rights", WARN, found, "; ".join(advice), details, clock.seconds), predicted
    return Check("rights", PASS, found, None, details, clock.seconds), predicted


def _producible(src: SnowflakeSource, samples: tuple[Sample, ...]) -> tuple[tuple[Sample, ...], dict[str, str]]:
    """The samples this source can produce at all, and why it refuses the others (a type an
    account does not have, such as VECTOR, cannot be in its tables either)."""
    def refusal(subset: tuple[Sample, ...]) -> str | None:
        try:
            src.execute(f"SELECT * FROM {literal_relation(subset)[0]}", doing="evaluating the test literals").close()
        except SourceError as exc:
            if not exc.refused:
                raise
            return str(exc)
        return None

    if refusal(samples) is None:
        return samples, {}
    refused = {s.snowflake_type: why for s in samples if (why := refusal((s,))) is not None}
    return tuple(s for s in samples if s.snowflake_type not in refused), refused


def _one_trip(store: Store, work: Path, src: SnowflakeSource, desc: TableDescription, samples: tuple[Sample, ...],
              transport: str) -> dict[str, Any]:
    """One transfer of the literals exactly as a sync makes it, then every value compared."""
    compared: dict[str, list[str]] = {}

    def finalize(con: duckdb.DuckDBPyConnection, staging: str, _: TransferResult) -> None:
        compared["mismatches"] = compare_loaded(con, qualified(desc.schema_name, staging), samples, desc.plans)

    transfer = Transfer(store, work, src, desc, transport, f"doctor_{transport}_{uuid.uuid4().hex[:8]}",
                        report=lambda **_: None)
    clock = _Timer()
    outcome: dict[str, Any] = {"requested": transport}
    try:
        transfer.run(None, None, finalize)
    except (SfduckError, duckdb.Error) as exc:  # a transport that fails is this check's finding
        outcome["error"] = str(exc).strip().splitlines()[0]
    result = transfer.result
    outcome.update(result.as_dict())
    outcome.update(total_s=round(clock.seconds, 3), mismatches=compared.get("mismatches", []),
                   local_files_deleted=not transfer.local_dir.exists())
    return outcome


def _trip_text(run: dict[str, Any], rows: int, types: int) -> str:
    steps = ", ".join(f"{step} {run[f'{step}_s']:.2f} s" for step in ("unload", "query", "download", "load")
                      if run.get(f"{step}_s") is not None)
    label = f"{run['requested']} -> {run.get('transport') or '?'}" if run["requested"] == "auto" else run["requested"]
    if run.get("error"):
        return f"{label}: failed: {run['error']}"
    shown = run["mismatches"][:3]
    verdict = (f"{types} types x {rows} rows identical" if not shown else
               f"{len(run['mismatches'])} value(s) differ: {'; '.join(shown)}"
               f"{' ...' if len(run['mismatches']) > len(shown) else ''}")
    return f"{label}: {verdict} ({steps}; total {run['total_s']:.2f} s)"


def check_round_trip(settings: Settings, src: SnowflakeSource, predicted: str) -> tuple[Check, dict[str, Any]]:
    """Literals of every mapped type, NULLs and extremes, through `auto` and through `arrow`
    (once, when `auto` already fell back to it), compared value by value after the load."""
    clock = _Timer()
    schema = src.settings.schema
    if not schema:
        return Check("round trip", FAIL, "not run: no schema to create the temporary stage in",
                     "Set SNOWFLAKE_SCHEMA.", seconds=clock.seconds), {}
    work = settings.data_dir / f"doctor_{uuid.uuid4().hex}"  # not under tmp/: a sync's cleanup owns that
    runs: list[dict[str, Any]] = []
    try:
        samples, refused = _producible(src, SAMPLES)
        desc = literal_description(schema, samples)
        rows = literal_relation(samples)[1]
        store = Store(work / "roundtrip.duckdb", settings.lock_timeout_s, settings.duckdb_memory_limit)
        runs.append(_one_trip(store, work, src, desc, samples, "auto"))
        if runs[0].get("transport") != "arrow":
            runs.append(_one_trip(store, work, src, desc, samples, "arrow"))
    except SfduckError as exc:
        return Check("round trip", FAIL, str(exc), "Check the network, then run the doctor again.",
                     seconds=clock.seconds), {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    left_behind = [str(work)] if work.exists() else []
    left_behind += [f"stage {r['stage']}" for r in runs if r.get("stage") and r.get("stage_dropped") is False]
    parts = [_trip_text(r, rows, len(samples)) for r in runs]
    if refused:
        parts.append(f"not produced by this source: {', '.join(refused)}")
    parts.append("nothing left behind" if not left_behind else f"left behind: {', '.join(left_behind)}")
    found = "; ".join(parts)
    details = {"runs": runs, "refused_types": refused, "rows": rows, "types": len(samples),
               "left_behind": left_behind}
    timings = {"runs": runs}
    failed = [r for r in runs if r.get("error")]
    differ = [r for r in runs if r["mismatches"]]
    auto = runs[0] if runs else {}
    if failed:
        stage_failed = any(r.get("transport") == "stage" for r in failed)
        advice = ("The stage transport failed after the unload: this machine may not reach the stage's cloud storage "
                  "(S3/Azure/GCS endpoints behind a proxy or firewall). `--transport arrow` works meanwhile."
                  if stage_failed else
                  "Read the message above; `sfduck doctor --json` has every step's details.")
        return Check("round trip", FAIL, found, advice, details, clock.seconds), timings
    if left_behind and any(p.startswith("/") for p in left_behind):
        return Check("round trip", FAIL, found, f"Remove {work} by hand and report this as a bug.", details,
                     clock.seconds), timings
    if auto.get("transport") != predicted:
        return Check("round trip", WARN, found,
                     f"The rights check predicted {predicted} for `auto`, but it used {auto.get('transport')}: "
                     "something changed between the two; run the doctor again.", details, clock.seconds), timings
    if differ or refused:
        if settings.demo:
            return Check("round trip", WARN, found,
                         "These are the embedded emulator's known limits (nanoseconds kept as microseconds, NUMBER "
                         "beyond 64 bits, no GEOGRAPHY/GEOMETRY/VECTOR); a real account is checked exactly.",
                         details, clock.seconds), timings
        if differ:
            return Check("round trip", FAIL, found,
                         "Columns of these types would not arrive exactly: exclude them (--exclude-columns) or sync "
                         "them through a view that casts them, and report the difference to the sfduck maintainers.",
                         details, clock.seconds), timings
        return Check("round trip", WARN, found,
                     "This account cannot produce these types, so its tables cannot hold them either.",
                     details, clock.seconds), timings
    return Check("round trip", PASS, found, None, details, clock.seconds), timings


def check_speed(src: SnowflakeSource, timings: dict[str, Any], login_s: float | None) -> Check:
    """A hint only: a few kilobytes say little about bandwidth, but a slow network shows already."""
    clock = _Timer()
    try:
        latency = min(src.ping() for _ in range(3))
    except SfduckError as exc:
        return Check("speed", FAIL, str(exc), "Check the network, then run the doctor again.", seconds=clock.seconds)
    parts = [f"query round trip {latency * 1000:.0f} ms"]
    if login_s is not None:
        parts.append(f"login {login_s:.2f} s")
    details: dict[str, Any] = {"latency_s": round(latency, 4), "login_s": login_s}
    for run in timings.get("runs", []):
        transport = run.get("transport")
        if run.get("error") or not transport:
            continue
        if transport == "arrow" and run.get("query_s") is not None:
            details["first_row_s"] = run["query_s"]
            parts.append(f"time to first row {run['query_s']:.2f} s (arrow)")
        elif transport == "stage" and run.get("unload_s") is not None:
            details["unload_s"] = run["unload_s"]
            parts.append(f"unload {run['unload_s']:.2f} s (stage)")
        size, seconds = run.get("bytes_transferred"), run.get("download_s")
        if size and seconds:
            rate = size / max(seconds, 1e-3)
            details[f"{transport}_bytes_per_s"] = round(rate)
            parts.append(f"download {human_bytes(rate)}/s over {human_bytes(size)} ({transport})")
    found = "; ".join(parts) + " (a hint from a tiny transfer, not a benchmark)"
    if latency > 1.0:
        return Check("speed", WARN, found, "Each statement takes over a second to come back: a proxy or a distant "
                     "region; syncs will work, but every step pays this.", details, clock.seconds)
    return Check("speed", PASS, found, None, details, clock.seconds)


def iter_lines(report: DoctorReport) -> Iterator[str]:
    yield from report.lines()
    yield f"{'all checks passed' if report.ok else 'some checks failed'} in {report.seconds:.1f} s"
