"""A cap on request bodies, for every route the server answers (the API, the dashboard's own routes).

FastAPI reads and parses a whole JSON or form body before any dependency runs, so without a cap a
stranger without a token could make the server hold hundreds of megabytes before the 401. This
middleware sits in front of everything: a declared `Content-Length` over the cap is answered 413
before a byte of the body is read, and a body without one (chunked) is counted while it streams
and cut off at the cap, so no more than the cap is ever buffered for one request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SETTING = "SFDUCK_MAX_BODY_BYTES"


def _too_large(limit: int) -> tuple[Message, Message]:
    body = json.dumps({"detail": f"The request body is larger than this server accepts (at most {limit} bytes; "
                                 f"an operator can raise {SETTING})."}).encode()
    start = {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length before we see it
    return None


class BodyLimit:
    """ASGI middleware: 413 with a JSON detail for a body over `max_bytes()` (read per request, so
    the setting follows the process's configuration)."""

    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes()
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            for message in _too_large(limit):
                await send(message)
            return
        received, refused, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        for answer in _too_large(limit):
                            await send(answer)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


_WEBSOCKET_PROTOCOLS = (("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol"),
                        ("uvicorn.protocols.websockets.websockets_impl", "WebSocketProtocol"),
                        ("uvicorn.protocols.websockets.wsproto_impl", "WSProtocol"))


def cap_websocket_messages(max_bytes: Callable[[], int]) -> None:
    """The same cap for every message a client sends over the dashboard's websocket.

    Streamlit hands uvicorn `ws_max_size` = `server.maxMessageSize` (200 MB, a limit meant for the
    pages it sends), so any visitor, logged in or not, could make the server hold 200 MB per
    connection before Streamlit's own 25 MB check ran on the whole message. That setting also bounds
    what the server sends, so it cannot simply be lowered; and uvicorn resolves its websocket protocol
    class before it imports this app, so the protocols themselves take the cap as each connection
    opens: a frame whose header declares more is refused (close 1009) before its payload is read.
    A browser's messages are widget states, a few kilobytes.
    """
    import importlib

    for module_name, class_name in _WEBSOCKET_PROTOCOLS:
        try:
            protocol = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):  # that implementation is not installed (its library is not)
            continue
        if getattr(protocol.__init__, "sfduck_capped", False):
            continue
        original = protocol.__init__

        def capped(self: Any, config: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            config.ws_max_size = min(config.ws_max_size, max_bytes())
            _original(self, config, *args, **kwargs)

        capped.sfduck_capped = True  # type: ignore[attr-defined]
        protocol.__init__ = capped
