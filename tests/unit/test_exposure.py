"""Issue 18 item 4: demo logins only on an address no other machine reaches. A host name counts as
loopback only when everything it resolves to is loopback, since the server binds what it resolves to."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from sfduck_core.exposure import is_loopback


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), (" 127.0.0.1 ", True),
    ("0.0.0.0", False), ("::", False), ("0", False), ("", False), (None, False), ("10.0.0.5", False),
])
def test_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What names resolve to, as an /etc/hosts file or a DNS server would answer."""
    table: dict[str, list[str]] = {}

    def getaddrinfo(host: str, *_: Any, **__: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in table[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def test_a_name_is_loopback_only_if_all_it_resolves_to_is(hosts: dict[str, list[str]]) -> None:
    hosts.update({"localhost": ["127.0.0.1", "::1"], "dev.localhost": ["192.168.1.9"],
                  "box": ["127.0.1.1", "10.0.0.5"]})
    assert is_loopback("localhost")
    assert is_loopback("LOCALHOST")
    assert not is_loopback("dev.localhost")  # *.localhost used to pass on its name alone
    assert not is_loopback("box")
    assert not is_loopback("unresolvable.localhost")


def test_localhost_pointed_at_a_network_interface_is_not_loopback(hosts: dict[str, list[str]]) -> None:
    hosts["localhost"] = ["10.0.0.5"]
    assert not is_loopback("localhost")
