"""Where a running emulator can be reached, and the demo database's names (defined once here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sfduck_core.config import SnowflakeSettings

DEMO_DATABASE = "SFDUCK_DEMO"
DEMO_SCHEMA = "WORKSPACE_833213390"
DEFAULT_ACCOUNT = "sfduck_emulator"


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything a client needs to reach a running emulator."""

    host: str
    port: int
    protocol: str
    account: str
    user: str
    password: str
    database: str
    schema: str

    def connect_kwargs(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "database": self.database,
            "schema": self.schema,
        }

    def snowflake_settings(self) -> SnowflakeSettings:
        """The same endpoint as sfduck's connection settings (the fields are the same by design)."""
        return SnowflakeSettings(**self.connect_kwargs())

    def as_env(self) -> dict[str, str]:
        return {
            "SNOWFLAKE_ACCOUNT": self.account,
            "SNOWFLAKE_USER": self.user,
            "SNOWFLAKE_PASSWORD": self.password,
            "SNOWFLAKE_DATABASE": self.database,
            "SNOWFLAKE_SCHEMA": self.schema,
            "SNOWFLAKE_HOST": self.host,
            "SNOWFLAKE_PORT": str(self.port),
            "SNOWFLAKE_PROTOCOL": self.protocol,
        }
