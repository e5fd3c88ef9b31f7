"""Issue 18 item 5: forwarded headers are believed only from the proxies an operator lists, and then
the client is the right-most address that is not one of them."""

from __future__ import annotations

import asyncio

import pytest

from sfduck_core.config import load_settings
from sfduck_core.errors import ConfigError
from sfduck_server.proxies import ClientAddress, TrustedProxies

PROXIES = TrustedProxies.of(("10.0.0.0/24", "127.0.0.1"))


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a proxy: its headers mean nothing
    ("127.0.0.2", ["198.51.100.1"], "127.0.0.2"),  # loopback is not trusted unless listed
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["1.1.1.1, 198.51.100.1, 10.0.0.7"], "198.51.100.1"),  # the right-most untrusted
    ("10.0.0.5", ["1.1.1.1", "198.51.100.1:4711"], "198.51.100.1"),  # several headers, a port
    ("127.0.0.1", ["[2001:db8::1]:80"], "2001:db8::1"),
    ("10.0.0.5", ["10.0.0.8, 10.0.0.9"], "10.0.0.8"),  # all proxies: the left-most
    ("10.0.0.5", [], "10.0.0.5"),
])
def test_the_client_is_the_right_most_untrusted_address(peer: str, forwarded: list[str], client: str) -> None:
    assert PROXIES.client_of(peer, forwarded) == client


def seen_by_the_app(proxies: TrustedProxies, peer: str, headers: list[tuple[bytes, bytes]],
                    kind: str = "http") -> tuple[str, str]:
    seen: dict = {}

    async def app(scope, receive, send) -> None:
        seen.update(scope)

    scope = {"type": kind, "client": (peer, 1234), "scheme": "ws" if kind == "websocket" else "http",
             "headers": headers}
    asyncio.run(ClientAddress(app, lambda: proxies)(scope, None, None))
    return seen["client"][0], seen["scheme"]


def test_by_default_no_header_moves_the_client_or_the_scheme() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-proto", b"https")]
    assert seen_by_the_app(TrustedProxies(), "127.0.0.1", headers) == ("127.0.0.1", "http")
    assert seen_by_the_app(PROXIES, "10.0.0.5", headers) == ("198.51.100.1", "https")
    assert seen_by_the_app(PROXIES, "10.0.0.5", headers, "websocket") == ("198.51.100.1", "wss")
    assert seen_by_the_app(PROXIES, "10.0.0.5", [(b"x-forwarded-proto", b"gopher")]) == ("10.0.0.5", "http")


def test_a_bad_proxy_list_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="SFDUCK_TRUSTED_PROXIES holds 'proxy.local'"):
        load_settings({"SFDUCK_TRUSTED_PROXIES": "10.0.0.1, proxy.local"}, dotenv_path="/nonexistent",
                      secrets_path="/nonexistent")
    settings = load_settings({"SFDUCK_TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16"}, dotenv_path="/nonexistent",
                             secrets_path="/nonexistent")
    assert settings.trusted_proxies == ("10.0.0.1", "10.1.0.0/16")
