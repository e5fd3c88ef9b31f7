"""Where sfduck's settings come from, and which one wins.

Precedence: process environment, then a `.env` file, then the `[connections.snowflake]` section of
`.streamlit/secrets.toml` (the keys Streamlit's own Snowflake connection uses). With no account
configured anywhere the settings say demo mode; the entry points then connect to the embedded
emulator (a plugin of the core, see `plugins`), so a fresh clone works with zero configuration. The password is held in a field that never prints.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from sfduck_core.cron import CronError, check_cron
from sfduck_core.errors import ConfigError

SNOWFLAKE_KEYS = (
    "account",
    "user",
    "password",
    "role",
    "warehouse",
    "database",
    "schema",
    "host",
    "port",
    "protocol",
    "private_key_file",
    "private_key_file_pwd",
    "authenticator",
    "login_timeout",
    "network_timeout",
)
DEFAULT_DUCKDB_PATH = "data/sfduck.duckdb"
DEFAULT_DATA_DIR = "data"
DEFAULT_USERS_FILE = "users.yaml"
DEFAULT_NETWORK_TIMEOUT_S = 120
DEFAULT_SYNC_TIMEOUT_S = 6 * 3600
DEFAULT_DATA_WAIT_S = 300.0  # SFDUCK_DATA_WAIT: a sync waits this long for a DuckDB file another process holds
DEFAULT_LAKE_RETENTION_CRON = "30 3 * * *"  # daily at 03:30 UTC
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: the server's request bodies are a few hundred bytes
OFF = "off"  # a retention rule or schedule that is not applied
DEMO_ENV = "SFDUCK_DEMO"  # "1": demo mode even where it would otherwise refuse to start
# The checkout holding streamlit_app.py: where Streamlit's project files live, whatever the cwd.
_CHECKOUT = Path(__file__).resolve().parents[1]
APP_DIR = _CHECKOUT if (_CHECKOUT / "streamlit_app.py").is_file() else None


@dataclass(frozen=True)
class SnowflakeSettings:
    account: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    role: str | None = None
    warehouse: str | None = None
    database: str | None = None
    schema: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    private_key_file: str | None = None
    private_key_file_pwd: str | None = field(default=None, repr=False)
    authenticator: str | None = None
    login_timeout: int | None = None
    network_timeout: int | None = None
    statement_timeout: int | None = None  # SFDUCK_SYNC_TIMEOUT: no statement outlives a sync

    @property
    def label(self) -> str:
        """What the UI shows as 'where the data comes from' (never a secret)."""
        return self.account or "unknown"

    def connect_kwargs(self) -> dict[str, Any]:
        """Arguments for snowflake.connector.connect; the session is pinned to UTC so that
        timestamps and watermarks never depend on an account's or a machine's time zone."""
        kwargs: dict[str, Any] = {
            k: getattr(self, k)
            for k in SNOWFLAKE_KEYS
            if getattr(self, k) not in (None, "") and k != "private_key_file_pwd"
        }
        if self.private_key_file_pwd:
            kwargs["private_key_file_pwd"] = self.private_key_file_pwd
        kwargs.setdefault("login_timeout", 30)
        # every request (and its retries) ends within this bound, so an outage fails a sync in
        # minutes instead of retrying for much longer
        kwargs.setdefault("network_timeout", DEFAULT_NETWORK_TIMEOUT_S)
        kwargs["socket_timeout"] = kwargs["network_timeout"]
        kwargs["session_parameters"] = {"TIMEZONE": "UTC"}
        if self.statement_timeout:
            kwargs["session_parameters"]["STATEMENT_TIMEOUT_IN_SECONDS"] = int(self.statement_timeout)
        kwargs["arrow_number_to_decimal"] = True
        return kwargs


TARGET_KINDS = ("duckdb", "ducklake")
LAKE_CATALOGS = ("sqlite", "postgres")
_PASSWORD_IN_LIBPQ = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)
_PASSWORD_IN_URI = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True)
class Target:
    """Where synced tables and sfduck's metadata live (SFDUCK_TARGET).

    `duckdb`: one DuckDB file, one process at a time. `ducklake`: a DuckLake whose catalog is a
    SQLite file (many processes on one machine) or a PostgreSQL database (many machines), with the
    data as Parquet files under `data_path`; readers attach it READ_ONLY and never wait for a
    writer. The catalog location of a PostgreSQL lake is a libpq string that may hold a password:
    it never prints (see `describe`)."""

    kind: str = "duckdb"
    path: Path | None = None  # the DuckDB file
    catalog: str | None = None  # a lake's catalog database: "sqlite" or "postgres"
    catalog_location: str = field(default="", repr=False)  # SQLite file path or libpq string
    data_path: str | None = None  # a lake's data folder (or s3://bucket/prefix/)

    @property
    def is_lake(self) -> bool:
        return self.kind == "ducklake"

    @property
    def attach_uri(self) -> str:
        """What `ATTACH` takes: 'ducklake:sqlite:<file>' or 'ducklake:postgres:<libpq string>'."""
        if not self.is_lake:
            return str(self.path)
        return f"ducklake:{self.catalog}:{self.catalog_location}"

    @property
    def local_dir(self) -> Path | None:
        """The local folder holding the file or the SQLite catalog (for disk checks and work files)."""
        if self.path is not None:
            return self.path.parent
        if self.catalog == "sqlite":
            return Path(self.catalog_location).parent
        return None

    def describe(self) -> str:
        """For logs and messages: never a password."""
        if not self.is_lake:
            return f"DuckDB file {self.path}"
        return f"DuckLake ({self.catalog} catalog {self.redact(self.catalog_location)}, data in {self.data_path})"

    def redact(self, text: str) -> str:
        """`text` (an error from DuckDB or PostgreSQL, say) with the catalog's password masked:
        the postgres extension quotes the whole connection string in its errors."""
        if self.catalog_location and self.catalog_location in text:
            text = text.replace(self.catalog_location, _mask_passwords(self.catalog_location))
        return _mask_passwords(text)


def _mask_passwords(text: str) -> str:
    return _PASSWORD_IN_URI.sub(r"\1***@", _PASSWORD_IN_LIBPQ.sub(r"\1***", text))


def parse_target(value: str, data_path: str | None, resolve: Callable[[str], Path]) -> Target:
    """SFDUCK_TARGET (+ SFDUCK_LAKE_DATA_PATH) as a Target; `resolve` makes a local path absolute
    relative to where the setting came from."""
    kind, _, rest = value.partition(":")
    if "\0" in value or (data_path and "\0" in data_path):
        raise ConfigError("SFDUCK_TARGET and SFDUCK_LAKE_DATA_PATH must not contain NUL characters.")
    if kind == "duckdb" and rest:
        return Target("duckdb", path=resolve(rest))
    if kind == "ducklake":
        catalog, _, location = rest.partition(":")
        if catalog in LAKE_CATALOGS and location.strip():
            if catalog == "sqlite":
                location = str(resolve(location))
            if data_path:
                data = data_path if "://" in data_path else str(resolve(data_path))
            elif catalog == "sqlite":
                data = location + ".files"  # DuckLake's own default, beside the catalog
            else:
                raise ConfigError("A DuckLake with a PostgreSQL catalog needs SFDUCK_LAKE_DATA_PATH (a folder every "
                                  "machine reaches, or s3://bucket/prefix/).")
            if "://" not in data and not data.endswith("/"):
                data += "/"
            return Target("ducklake", catalog=catalog, catalog_location=location, data_path=data)
    shown = value if kind != "ducklake" else "ducklake:" + rest.partition(":")[0] + ":..."
    raise ConfigError(
        f"SFDUCK_TARGET {shown!r} is not understood; use duckdb:<file>, ducklake:sqlite:<catalog file> or "
        "ducklake:postgres:<libpq connection string>."
    )


@dataclass(frozen=True)
class Settings:
    snowflake: SnowflakeSettings
    duckdb_path: Path
    data_dir: Path
    demo: bool
    lock_timeout_s: float = 30.0
    data_wait_s: float = DEFAULT_DATA_WAIT_S  # how long a sync waits for a DuckDB file another process holds
    duckdb_memory_limit: str = "256MB"
    session_hours: float = 12.0  # how long a dashboard login (its re-login cookie) lasts
    users_file: Path = Path(DEFAULT_USERS_FILE)
    files_read: tuple[str, ...] = ()  # the .env and secrets files that supplied settings
    sync_timeout_s: float = DEFAULT_SYNC_TIMEOUT_S  # a whole sync, download and load included
    sql_max_bytes: int = 32 << 20  # the most a SQL box result may send to the dashboard process
    sql_total_bytes: int = 256 << 20  # the most all SQL box results held by the process may hold together
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # the largest request body the server reads
    trusted_proxies: tuple[str, ...] = ()  # IPs/CIDRs whose X-Forwarded-For/-Proto the server believes
    demo_allow_remote: bool = False  # demo logins (admin/admin) served on an address others can reach
    max_parallel_syncs: int = 2  # syncs moving data at once in a server process; others queue
    notify_urls: tuple[str, ...] = field(default=(), repr=False)  # apprise URLs (they may hold tokens)
    notify_on_success: bool = False
    schedule_failure_limit: int = 5  # consecutive failures after which a schedule pauses itself
    job_retention_days: float | None = None  # finished jobs older than this are pruned (None: kept)
    server_url: str | None = None  # the CLI drives this running server instead of the DuckDB file
    # (setting, where its value came from) for every setting that was given: names, never values
    origins: tuple[tuple[str, str], ...] = ()
    target: Target | None = None  # SFDUCK_TARGET when it names a lake; None: the file `duckdb_path`
    # a lake's retention (see retention.py): versions kept per table, days kept, when it runs (UTC cron)
    lake_keep_versions: int | None = 10
    lake_keep_days: float | None = 7.0
    lake_retention_cron: str | None = DEFAULT_LAKE_RETENTION_CRON
    # SFDUCK_METADATA_URL: where registrations, jobs and schedules live (None: a SQLite file beside
    # the DuckDB file, see sfduck_core.metadata); it may hold a password, so it is never printed
    metadata_url: str | None = field(default=None, repr=False)

    @property
    def storage(self) -> Target:
        """Where the data lives: the lake when one is configured, else the DuckDB file."""
        return self.target or Target("duckdb", path=self.duckdb_path)

    @property
    def source_label(self) -> str:
        """Which Snowflake the local data belongs to (never a secret)."""
        return "demo" if self.demo else (self.snowflake.account or "unknown").lower()

    def describe(self) -> str:
        """One log line: the mode and where the settings came from."""
        mode = "demo mode (embedded emulator)" if self.demo else f"account {self.snowflake.account}"
        files = ", ".join(self.files_read) or "no settings files (environment only)"
        return f"sfduck: {mode}; settings from {files}; {self.storage.describe()}"


def _metadata_url(value: Any) -> str | None:
    """SFDUCK_METADATA_URL: a SQLAlchemy URL of SQLite or PostgreSQL (checked here, so a typo is
    told at start with the setting's name, and never with its password)."""
    text = str(value or "").strip()
    if not text:
        return None
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme.split("+", 1)[0] not in ("sqlite", "postgresql"):
        raise ConfigError("SFDUCK_METADATA_URL must be sqlite:///<file> or postgresql+psycopg://user@host/db "
                          f"(got a URL starting {scheme + '://' if scheme else 'without a scheme'}).")
    if scheme == "postgresql" or scheme == "postgres":
        text = "postgresql+psycopg://" + text.split("://", 1)[1]  # the driver sfduck ships with
    return text


def _env_key(key: str) -> str:
    return f"SNOWFLAKE_{key.upper()}"


def _optional_setting(value: Any, name: str, default: float) -> float | None:
    """A positive number, or `off` (the rule is not applied)."""
    if str(value or "").strip().lower() == OFF:
        return None
    return _positive_number(value, name, default)


def _cron_setting(value: Any, name: str, default: str | None) -> str | None:
    """A five-field cron expression in UTC, or `off`."""
    text = str(value or "").strip()
    if text.lower() == OFF:
        return None
    if not text:
        return default
    try:
        check_cron(text)
    except CronError as exc:
        raise ConfigError(f"{name} {text!r} is not a cron expression sfduck accepts ({exc}); use five "
                          "fields (minute hour day-of-month month day-of-week, in UTC) or 'off'.") from None
    return text


def _networks_setting(value: Any, name: str) -> tuple[str, ...]:
    """IP addresses or CIDR ranges, separated by commas or spaces."""
    items = tuple(str(value or "").replace(",", " ").split())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name} holds {item!r}, which is not an IP address or a CIDR range "
                              "(e.g. 10.0.0.5 or 10.0.0.0/24).") from None
    return items


def _positive_number(value: Any, name: str, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}.")
    return number


def _secrets_section(secrets_path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(secrets_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{secrets_path} is not valid TOML: {exc}") from None
    section = data.get("connections", {}).get("snowflake", {})
    return {str(k).lower(): v for k, v in section.items()}


def _candidates(explicit: str | os.PathLike[str] | None, relative: str, home: Path | None) -> list[Path]:
    """Where a settings file may be, first wins: the one given, else the working directory, the
    app's folder (as Streamlit finds its project files) and, for secrets, the home folder."""
    if explicit is not None:
        return [Path(explicit)]
    folders = [Path.cwd(), *([APP_DIR] if APP_DIR else []), *([home] if home else [])]
    seen: list[Path] = []
    for folder in folders:
        path = (folder / relative).resolve()
        if path not in seen:
            seen.append(path)
    return seen


def load_settings(
    env: dict[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] | None = None,
    secrets_path: str | os.PathLike[str] | None = None,
) -> Settings:
    """Merge the sources. `env` defaults to os.environ; tests pass their own and explicit files.

    Relative paths become absolute here, once: a value from a file is relative to that file's
    project folder, one from the environment to the working directory, a default to the app's
    folder, so that starting from another directory never opens another database.
    """
    env = dict(os.environ if env is None else env)
    files_read: list[str] = []
    dotenv: dict[str, str] = {}
    dotenv_dir = Path.cwd()
    for path in _candidates(dotenv_path, ".env", None):
        if path.is_file():
            dotenv = {k: v for k, v in dotenv_values(path).items() if v is not None}
            dotenv_dir = path.parent.resolve()
            files_read.append(str(path))
            break
    secrets: dict[str, Any] = {}
    secrets_files = [p for p in _candidates(secrets_path, ".streamlit/secrets.toml", Path.home()) if p.is_file()]
    for path in reversed(secrets_files):  # as Streamlit does: the project's file wins over the home's
        secrets.update(_secrets_section(path))
    files_read.extend(str(p) for p in secrets_files)

    origins: dict[str, str] = {}
    dotenv_label = f".env ({files_read[0]})" if dotenv else ".env"
    secrets_label = f"secrets file ({', '.join(str(p) for p in secrets_files)})"

    def pick(name: str, secrets_key: str | None = None) -> Any:
        for source, label in ((env, "environment"), (dotenv, dotenv_label)):
            if source.get(name) not in (None, ""):
                origins[name] = label
                return source[name]
        if secrets_key is not None and secrets.get(secrets_key) not in (None, ""):
            origins[name] = secrets_label
            return secrets[secrets_key]
        return None

    def path_setting(name: str, default: str) -> Path:
        if env.get(name):
            origins[name] = "environment"
            return (Path.cwd() / env[name]).resolve()
        if dotenv.get(name):
            origins[name] = dotenv_label
            return (dotenv_dir / dotenv[name]).resolve()
        return ((APP_DIR or Path.cwd()) / default).resolve()

    def resolver(name: str) -> Callable[[str], Path]:
        base = Path.cwd() if env.get(name) else dotenv_dir
        return lambda raw: (base / raw).resolve()

    duckdb_path = path_setting("SFDUCK_DUCKDB_PATH", DEFAULT_DUCKDB_PATH)
    target = None
    if pick("SFDUCK_TARGET"):
        target = parse_target(str(pick("SFDUCK_TARGET")), pick("SFDUCK_LAKE_DATA_PATH"), resolver("SFDUCK_TARGET"))
        if not target.is_lake:  # duckdb:<file> is SFDUCK_DUCKDB_PATH by another name
            duckdb_path, target = target.path or duckdb_path, None
    values: dict[str, Any] = {k: pick(_env_key(k), k) for k in SNOWFLAKE_KEYS}
    for numeric in ("port", "login_timeout", "network_timeout"):
        if values[numeric] not in (None, ""):
            try:
                values[numeric] = int(values[numeric])
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{_env_key(numeric)} must be a number, got {values[numeric]!r}."
                ) from None
    sync_timeout_s = _positive_number(pick("SFDUCK_SYNC_TIMEOUT"), "SFDUCK_SYNC_TIMEOUT", DEFAULT_SYNC_TIMEOUT_S)
    values["statement_timeout"] = int(sync_timeout_s)
    snowflake = SnowflakeSettings(**{k: (v if v != "" else None) for k, v in values.items()})

    lock_timeout = pick("SFDUCK_LOCK_TIMEOUT")
    data_wait_s = _positive_number(pick("SFDUCK_DATA_WAIT"), "SFDUCK_DATA_WAIT", DEFAULT_DATA_WAIT_S)
    memory_limit = pick("SFDUCK_DUCKDB_MEMORY_LIMIT") or "256MB"
    session_hours = _positive_number(pick("SFDUCK_SESSION_HOURS"), "SFDUCK_SESSION_HOURS", 12.0)
    users_file = path_setting("SFDUCK_USERS_FILE", DEFAULT_USERS_FILE)
    sql_max_bytes = int(_positive_number(pick("SFDUCK_SQL_MAX_BYTES"), "SFDUCK_SQL_MAX_BYTES", 32 << 20))
    sql_total_bytes = int(_positive_number(pick("SFDUCK_SQL_TOTAL_BYTES"), "SFDUCK_SQL_TOTAL_BYTES", 256 << 20))
    max_body_bytes = int(_positive_number(pick("SFDUCK_MAX_BODY_BYTES"), "SFDUCK_MAX_BODY_BYTES",
                                          DEFAULT_MAX_BODY_BYTES))
    max_parallel = int(_positive_number(pick("SFDUCK_MAX_PARALLEL_SYNCS"), "SFDUCK_MAX_PARALLEL_SYNCS", 2))
    failure_limit = int(_positive_number(pick("SFDUCK_SCHEDULE_FAILURE_LIMIT"), "SFDUCK_SCHEDULE_FAILURE_LIMIT", 5))
    retention = pick("SFDUCK_JOB_RETENTION_DAYS")
    keep_versions = _optional_setting(pick("SFDUCK_LAKE_KEEP_VERSIONS"), "SFDUCK_LAKE_KEEP_VERSIONS", 10)
    if keep_versions is not None and keep_versions != int(keep_versions):
        raise ConfigError(f"SFDUCK_LAKE_KEEP_VERSIONS must be a whole number of versions, got {keep_versions:g}.")
    notify_urls = tuple(u.strip() for u in str(pick("SFDUCK_NOTIFY_URLS") or "").replace("\n", " ").split() if u.strip())
    demo = not snowflake.account
    if not demo and not (snowflake.password or snowflake.private_key_file or snowflake.authenticator):
        raise ConfigError(
            "SNOWFLAKE_ACCOUNT is set but no credentials are: set SNOWFLAKE_PASSWORD or "
            "SNOWFLAKE_PRIVATE_KEY_FILE (or an authenticator)."
        )
    if not demo and not snowflake.user:
        raise ConfigError("SNOWFLAKE_ACCOUNT is set but SNOWFLAKE_USER is not.")
    if demo and users_file.is_file() and str(pick(DEMO_ENV) or "") != "1":
        looked = ", ".join(str(p) for p in _candidates(secrets_path, ".streamlit/secrets.toml", Path.home()))
        raise ConfigError(
            f"No Snowflake account is configured, but a users file exists at {users_file}: this looks "
            "like an installation whose configuration was not found, and demo mode (with its demo "
            f"logins) will not start there. Looked for secrets in: {looked}. Set SNOWFLAKE_ACCOUNT, or "
            f"{DEMO_ENV}=1 to run the demo anyway."
        )
    data_dir = path_setting("SFDUCK_DATA_DIR", DEFAULT_DATA_DIR)
    keep_days = _optional_setting(pick("SFDUCK_LAKE_KEEP_DAYS"), "SFDUCK_LAKE_KEEP_DAYS", 7.0)
    retention_cron = _cron_setting(pick("SFDUCK_LAKE_RETENTION_SCHEDULE"), "SFDUCK_LAKE_RETENTION_SCHEDULE",
                                   DEFAULT_LAKE_RETENTION_CRON)
    if keep_versions is None and keep_days is None and retention_cron is not None:
        raise ConfigError("SFDUCK_LAKE_KEEP_VERSIONS and SFDUCK_LAKE_KEEP_DAYS are both off, so retention would "
                          "keep nothing; to keep every version, set SFDUCK_LAKE_RETENTION_SCHEDULE=off instead.")
    return Settings(
        snowflake=snowflake,
        duckdb_path=duckdb_path,
        data_dir=data_dir,
        demo=demo,
        lock_timeout_s=float(lock_timeout) if lock_timeout else 30.0,
        data_wait_s=data_wait_s,
        duckdb_memory_limit=memory_limit,
        session_hours=session_hours,
        users_file=users_file,
        sync_timeout_s=sync_timeout_s,
        files_read=tuple(files_read),
        sql_max_bytes=sql_max_bytes,
        sql_total_bytes=sql_total_bytes,
        max_body_bytes=max_body_bytes,
        trusted_proxies=_networks_setting(pick("SFDUCK_TRUSTED_PROXIES"), "SFDUCK_TRUSTED_PROXIES"),
        demo_allow_remote=str(pick("SFDUCK_DEMO_ALLOW_REMOTE") or "").lower() in ("1", "true", "yes"),
        max_parallel_syncs=max_parallel,
        notify_urls=notify_urls,
        notify_on_success=str(pick("SFDUCK_NOTIFY_ON_SUCCESS") or "").lower() in ("1", "true", "yes"),
        schedule_failure_limit=failure_limit,
        job_retention_days=_positive_number(retention, "SFDUCK_JOB_RETENTION_DAYS", 0) if retention else None,
        server_url=(pick("SFDUCK_SERVER_URL") or None),
        origins=tuple(sorted(origins.items())),
        target=target,
        lake_keep_versions=None if keep_versions is None else int(keep_versions),
        lake_keep_days=keep_days,
        lake_retention_cron=retention_cron,
        metadata_url=_metadata_url(pick("SFDUCK_METADATA_URL")),
    )
