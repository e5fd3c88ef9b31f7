"""What the server prints on its console when it starts: how to reach it and what it serves.

Printed, not logged: Streamlit's logging drops info messages, and this is the one thing a person
starting the server must see. The address and port are Streamlit's own (`--server.address`,
`--server.port`, as ./scripts/dashboard.sh passes them).
"""

from __future__ import annotations

import sys

from streamlit import config

from sfduck_core.authdb import AUTH_DB_FILE
from sfduck_core.config import Settings
from sfduck_core.metadata import default_metadata_url, redact_url
from sfduck_core.users import DEMO_PASSWORDS


def server_url() -> str:
    """The URL this server answers on, as a browser or the CLI on this machine reaches it."""
    address = config.get_option("server.address") or ""
    host = "127.0.0.1" if address in ("", "0.0.0.0", "::") else address
    if ":" in host:
        host = f"[{host}]"
    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"http://{host}:{config.get_option('server.port')}" + (f"/{base}" if base else "")


def banner(settings: Settings, url: str) -> str:
    """The lines printed at start (never a secret: the target's description masks passwords)."""
    mode = ("demo mode: the embedded Snowflake emulator with demo data" if settings.demo
            else f"account {settings.snowflake.account}")
    files = ", ".join(str(f) for f in settings.files_read) or "the environment only"
    lines = [
        f"sfduck server ({mode})",
        f"  settings from: {files}",
        f"  synced tables: {settings.storage.describe()}",
        f"  sync metadata: {redact_url(settings.metadata_url or default_metadata_url(settings.duckdb_path.parent))}"
        f"; logins and sessions in {settings.duckdb_path.parent / AUTH_DB_FILE}",
        f"  dashboard:     {url}/",
        f"  API:           {url}/api/v1 (docs {url}/api/v1/docs, ReDoc {url}/api/v1/redoc)",
    ]
    if settings.demo:
        users = ", ".join(f"{user} / {password}" for user, password in DEMO_PASSWORDS.items())
        lines.append(f"  demo users:    {users} (username / password)")
    return "\n".join(lines)


def print_banner(settings: Settings, url: str) -> None:
    print(banner(settings, url), file=sys.stdout, flush=True)
