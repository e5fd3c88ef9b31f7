"""The dashboard's re-login cookie, set and cleared by the server so that page scripts cannot read it.

A cookie written by JavaScript (`document.cookie`) can never be HttpOnly, so any script running in
the page could read the session. Instead the login page's script hands the fresh token to this
route once, which answers with a `Set-Cookie` header: HttpOnly, SameSite=Strict, and Secure when the
request came over https (the scheme as `ClientAddress` settled it, so `X-Forwarded-Proto` counts only
from a trusted proxy). The token must be a valid session, so the route cannot plant arbitrary
cookies; it takes only JSON (a cross-site form cannot send that without a CORS preflight, which
nothing here answers) and refuses a foreign `Origin`. Logging out clears the cookie the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sfduck_core.service import Service


def _refusal(request: Request) -> JSONResponse | None:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json" \
            and request.method == "POST":
        return JSONResponse({"detail": "Send the token as JSON."}, 415)
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return JSONResponse({"detail": "Cross-site requests are refused."}, 403)
    return None


def session_cookie_routes(get_service: Callable[[], Service], cookie_name: str, path: str) -> list[Route]:
    """At `path`, POST {"token": ...}: Set-Cookie for a valid session; DELETE: clear the cookie."""

    def attributes(request: Request) -> dict:
        return {"path": "/", "httponly": True, "samesite": "strict", "secure": request.url.scheme == "https"}

    async def remember(request: Request) -> Response:
        refused = _refusal(request)
        if refused is not None:
            return refused
        try:
            token = (await request.json()).get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str):
            return JSONResponse({"detail": 'Send {"token": "..."}.'}, 400)
        principal = await run_in_threadpool(get_service().authenticate, token)
        if principal is None:
            return JSONResponse({"detail": "Not a valid session."}, 401)
        response = Response(status_code=204)
        response.set_cookie(cookie_name, token, max_age=max(0, int(principal.session.expires_at - time.time())),
                            **attributes(request))
        return response

    async def forget(request: Request) -> Response:
        refused = _refusal(request)
        if refused is not None:
            return refused
        response = Response(status_code=204)
        response.delete_cookie(cookie_name, **attributes(request))
        return response

    return [Route(path, remember, methods=["POST"]), Route(path, forget, methods=["DELETE"])]
