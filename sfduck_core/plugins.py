"""Extensions found through package entry points, so that the core never imports them.

The demo emulator is one: its package declares itself in `pyproject.toml` under the groups
below, and is installed with the project (or `pip install 'sfduck[emulator]'`). Without it, demo
mode and the `emulator` command say how to get it instead of failing with an ImportError.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from sfduck_core.config import Settings, SnowflakeSettings
from sfduck_core.errors import ConfigError

# a callable returning the emulator's SnowflakeSettings; its `change_orders` changes the demo's ORDERS
DEMO_SOURCE_GROUP = "sfduck.demo_source"
COMMAND_GROUP = "sfduck.commands"  # extra subcommands: callable(argv) -> exit code
_MISSING_EMULATOR = ("the embedded Snowflake emulator is not installed: pip install 'sfduck[emulator]' "
                     "(or configure SNOWFLAKE_ACCOUNT to use a real account).")


def _load(group: str, name: str) -> Any | None:
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    return found[0].load() if found else None


def snowflake_source(settings: Settings) -> Callable[[], SnowflakeSettings]:
    """Where the engine connects: the configured account, or in demo mode the embedded emulator,
    started (and seeded) only when something first connects."""
    if not settings.demo:
        return lambda: settings.snowflake
    start = _load(DEMO_SOURCE_GROUP, "emulator")
    if start is None:
        def missing() -> SnowflakeSettings:
            raise ConfigError(f"No Snowflake account is configured and {_MISSING_EMULATOR}")

        return missing
    return start


def demo_changer(settings: Settings) -> Callable[[int, int, int], dict[str, int]] | None:
    """In demo mode, the demo source's way to make its ORDERS table change: called with (inserts,
    updates, deletes), it returns what it did. None outside demo mode or without the emulator."""
    if not settings.demo:
        return None
    source = _load(DEMO_SOURCE_GROUP, "emulator")
    return getattr(source, "change_orders", None)


def command(name: str) -> Callable[[list[str]], int]:
    """A subcommand that lives outside the core (`emulator`), or ConfigError naming what to install."""
    found = _load(COMMAND_GROUP, name)
    if found is None:
        raise ConfigError(f"`{name}` is not available: {_MISSING_EMULATOR}")
    return found
