"""Demo mode answers only requests addressed to loopback, so no web page can drive it (DNS rebinding).

See `sfduck_core.exposure.demo_foreign_host_refusal`. In front of every route, the API, the dashboard
and its websocket alike; outside demo mode (real accounts, real passwords) nothing changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send


class DemoHostCheck:
    """ASGI middleware: 403 JSON (HTTP) or close 1008 (websocket) for a request `refusal(host)` refuses."""

    def __init__(self, app: ASGIApp, refusal: Callable[[str | None], str | None]) -> None:
        self.app, self.refusal = app, refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        refused = self.refusal(host)
        if refused is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "demo mode: loopback only"})
            return
        body = json.dumps({"detail": refused}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
