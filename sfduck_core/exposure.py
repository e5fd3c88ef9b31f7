"""Demo mode's logins are public knowledge (admin/admin): serve them only where nobody else can reach.

The server knows the address it listens on (Streamlit's `server.address`; unset means every
interface). On anything but a loopback address, demo mode refuses every login, unless the
operator says explicitly that anyone who can reach the server may be admin.
"""

from __future__ import annotations

import ipaddress
import socket

from sfduck_core.config import Settings

ALLOW_SETTING = "SFDUCK_DEMO_ALLOW_REMOTE"
EVERY_INTERFACE = "0.0.0.0"  # what Streamlit binds when no address is set (with "::")


def is_loopback(address: str | None) -> bool:
    """True only for addresses no other machine reaches: 127.0.0.0/8, ::1, and a host name (localhost
    too) only when every address it resolves to is one of those, since the server binds what the
    name resolves to (an /etc/hosts line or a DNS answer can point `localhost` or `dev.localhost`
    at a network interface). A name that does not resolve is not loopback."""
    text = (address or EVERY_INTERFACE).strip().strip("[]").lower()
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        pass
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(text, None)}
    except (OSError, UnicodeError):
        return False
    try:
        return bool(resolved) and all(ipaddress.ip_address(str(a).split("%", 1)[0]).is_loopback for a in resolved)
    except ValueError:
        return False


def demo_login_refusal(settings: Settings, bind_address: str | None) -> str | None:
    """Why logins are refused on this server (None when they are not): demo mode on a reachable address."""
    if not settings.demo or settings.demo_allow_remote or is_loopback(bind_address):
        return None
    shown = bind_address or f"every interface ({EVERY_INTERFACE})"
    return (f"Logins are refused: this is demo mode (its users admin/admin and analyst/analyst are public) "
            f"and the server listens on {shown}, which other machines can reach. Serve it on 127.0.0.1 "
            f"(SFDUCK_ADDRESS=127.0.0.1 ./scripts/dashboard.sh, or --server.address 127.0.0.1), configure a "
            f"Snowflake account and a users file, or, if everyone who can reach this address may be admin, "
            f"restart it with {ALLOW_SETTING}=1.")
