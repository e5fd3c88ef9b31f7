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


def is_loopback_host(host_header: str | None) -> bool:
    """Whether a request's Host names this machine's loopback: localhost or a loopback IP, any port.

    Not resolved: a browser sends the name it was given, so a page of another site that rebinds its
    own name to 127.0.0.1 (DNS rebinding) still sends that site's name."""
    text = (host_header or "").strip().lower().rstrip(".")
    if text.startswith("["):
        name = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        name = text.partition(":")[0].rstrip(".")
    else:
        name = text
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def demo_foreign_host_refusal(settings: Settings, host_header: str | None) -> str | None:
    """Why a demo server refuses a request that names a host other than loopback (None when it does not).

    On 127.0.0.1 the demo's public admin/admin is safe from the network, but not from the web: any page
    the operator's browser opens can rebind its name to 127.0.0.1 and drive the demo as admin. Only a
    request addressed to the loopback name or IP it is served on is the operator's own."""
    if not settings.demo or settings.demo_allow_remote or is_loopback_host(host_header):
        return None
    return (f"This demo server answers only requests addressed to 127.0.0.1 or localhost (this one names "
            f"{(host_header or 'no host')[:100]!r}): its users admin/admin are public. Open it at http://127.0.0.1:PORT, "
            f"or, if everyone who can reach it may be admin, restart it with {ALLOW_SETTING}=1.")
