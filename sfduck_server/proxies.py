"""Who the client is: `X-Forwarded-For` and `X-Forwarded-Proto` believed only from listed proxies.

The login throttle counts failures per client address, and the session cookie is `Secure` behind
https, so both must come from something a client cannot choose. uvicorn (which serves `st.App`)
believes forwarded headers from any peer on 127.0.0.1 by default: a local process could rotate
`X-Forwarded-For` and escape the throttle. So sfduck switches uvicorn's own handling off and does
it here, for every route (the API, and the dashboard's websocket, whose peer is what
`st.context.ip_address` reports): only when the peer is one of `SFDUCK_TRUSTED_PROXIES` (IPs or
CIDRs; none by default) does the client become the right-most address of the chain that is not a
trusted proxy, and the scheme the last proxy's `X-Forwarded-Proto`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, items: Iterable[str]) -> TrustedProxies:
        """From `Settings.trusted_proxies` (addresses or CIDRs, already checked when settings load)."""
        return cls(tuple(ipaddress.ip_network(item, strict=False) for item in items))

    def trusts(self, host: str | None) -> bool:
        if not host or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def client_of(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The right-most address of `forwarded_for + [peer]` that is not a trusted proxy (the
        left-most when every one is): what the proxies we trust saw. The peer alone if untrusted."""
        if not self.trusts(peer):
            return peer
        chain = [_host_of(item) for value in forwarded_for for item in value.split(",") if item.strip()]
        for host in reversed(chain):
            if not self.trusts(host):
                return host
        return chain[0] if chain else peer


def _host_of(item: str) -> str:
    """A forwarded entry without its port: "1.2.3.4:5678" -> "1.2.3.4", "[::1]:80" -> "::1"."""
    item = item.strip()
    if item.startswith("["):
        return item[1:].partition("]")[0]
    if item.count(":") == 1:
        return item.partition(":")[0]
    return item


class ClientAddress:
    """ASGI middleware: sets scope["client"] and scope["scheme"] from the forwarded headers of a
    trusted proxy, and from the connection itself otherwise (whatever the headers say)."""

    def __init__(self, app: ASGIApp, proxies: Callable[[], TrustedProxies]) -> None:
        self.app, self.proxies = app, proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        proxies = self.proxies()
        peer_host, peer_port = scope.get("client") or (None, 0)
        if not proxies.trusts(peer_host):
            await self.app(scope, receive, send)
            return
        forwarded_for = [v.decode("latin1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
        proto = [v.decode("latin1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-proto"]
        scope = dict(scope)
        client = proxies.client_of(peer_host, forwarded_for)
        if client != peer_host:
            scope["client"] = (client, 0)
        scheme = proto[-1].split(",")[-1].strip().lower() if proto else ""
        if scheme in ("http", "https"):
            scope["scheme"] = scheme.replace("http", "ws") if scope["type"] == "websocket" else scheme
        await self.app(scope, receive, send)


def _no_uvicorn_proxy_headers(app: ASGIApp, **_: object) -> ASGIApp:
    return app


def take_over_from_uvicorn() -> None:
    """Switch off uvicorn's own forwarded-header handling (it believes any peer on 127.0.0.1).

    uvicorn wraps the app it imports in `uvicorn.config.ProxyHeadersMiddleware` right after the
    import, and Streamlit gives no way to pass `proxy_headers=False`; our module is imported first,
    so replacing that name here leaves `ClientAddress` the only judge. The server test proves it.
    """
    try:
        import uvicorn.config
    except ImportError:  # not served by uvicorn: nothing rewrites the client before us
        return
    uvicorn.config.ProxyHeadersMiddleware = _no_uvicorn_proxy_headers  # type: ignore[assignment,misc]
