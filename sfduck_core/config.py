"""Where sfduck's settings come from, and which one wins.

Precedence: process environment, then a `.env` file, then the `[connections.snowflake]` section of
`.streamlit/secrets.toml` (the keys Streamlit's own Snowflake connection uses). With no account
configured anywhere sfduck runs in demo mode on the embedded emulator, so a fresh clone works with
zero configuration. The password is held in a field that never prints.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

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
)
DEFAULT_DUCKDB_PATH = "data/sfduck.duckdb"
DEFAULT_DATA_DIR = "data"


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
        kwargs["session_parameters"] = {"TIMEZONE": "UTC"}
        kwargs["arrow_number_to_decimal"] = True
        return kwargs


@dataclass(frozen=True)
class Settings:
    snowflake: SnowflakeSettings
    duckdb_path: Path
    data_dir: Path
    demo: bool
    lock_timeout_s: float = 30.0
    duckdb_memory_limit: str = "256MB"
    session_hours: float = 12.0  # how long a dashboard login (its re-login cookie) lasts
    sql_max_bytes: int = 32 << 20  # the most a SQL box result may send to the dashboard process


def _env_key(key: str) -> str:
    return f"SNOWFLAKE_{key.upper()}"


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
    if not secrets_path.is_file():
        return {}
    try:
        data = tomllib.loads(secrets_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{secrets_path} is not valid TOML: {exc}") from None
    section = data.get("connections", {}).get("snowflake", {})
    return {str(k).lower(): v for k, v in section.items()}


def load_settings(
    env: dict[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] = ".env",
    secrets_path: str | os.PathLike[str] = ".streamlit/secrets.toml",
) -> Settings:
    """Merge the three sources. `env` defaults to os.environ; tests pass their own."""
    env = dict(os.environ if env is None else env)
    dotenv = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if Path(
        dotenv_path
    ).is_file() else {}
    secrets = _secrets_section(Path(secrets_path))

    def pick(name: str, secrets_key: str | None = None) -> Any:
        for source in (env, dotenv):
            if source.get(name) not in (None, ""):
                return source[name]
        if secrets_key is not None:
            return secrets.get(secrets_key)
        return None

    values: dict[str, Any] = {k: pick(_env_key(k), k) for k in SNOWFLAKE_KEYS}
    for numeric in ("port", "login_timeout"):
        if values[numeric] not in (None, ""):
            try:
                values[numeric] = int(values[numeric])
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{_env_key(numeric)} must be a number, got {values[numeric]!r}."
                ) from None
    snowflake = SnowflakeSettings(**{k: (v if v != "" else None) for k, v in values.items()})

    duckdb_path = Path(pick("SFDUCK_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)
    data_dir = Path(pick("SFDUCK_DATA_DIR") or DEFAULT_DATA_DIR)
    lock_timeout = pick("SFDUCK_LOCK_TIMEOUT")
    memory_limit = pick("SFDUCK_DUCKDB_MEMORY_LIMIT") or "256MB"
    session_hours = _positive_number(pick("SFDUCK_SESSION_HOURS"), "SFDUCK_SESSION_HOURS", 12.0)
    sql_max_bytes = int(_positive_number(pick("SFDUCK_SQL_MAX_BYTES"), "SFDUCK_SQL_MAX_BYTES", 32 << 20))
    demo = not snowflake.account
    if not demo and not (snowflake.password or snowflake.private_key_file or snowflake.authenticator):
        raise ConfigError(
            "SNOWFLAKE_ACCOUNT is set but no credentials are: set SNOWFLAKE_PASSWORD or "
            "SNOWFLAKE_PRIVATE_KEY_FILE (or an authenticator)."
        )
    if not demo and not snowflake.user:
        raise ConfigError("SNOWFLAKE_ACCOUNT is set but SNOWFLAKE_USER is not.")
    return Settings(
        snowflake=snowflake,
        duckdb_path=duckdb_path,
        data_dir=data_dir,
        demo=demo,
        lock_timeout_s=float(lock_timeout) if lock_timeout else 30.0,
        duckdb_memory_limit=memory_limit,
        session_hours=session_hours,
        sql_max_bytes=sql_max_bytes,
    )


def resolve_snowflake(settings: Settings) -> SnowflakeSettings:
    """The settings to connect with: the configured account, or the embedded emulator in demo mode."""
    if not settings.demo:
        return settings.snowflake
    from sfduck_core.emulator import embedded_emulator

    return embedded_emulator().snowflake_settings()
