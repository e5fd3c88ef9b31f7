"""Issue 18: the API's logins and tokens as an attacker meets them: logout revokes the presented
token, tokens with a non-finite expiry are refused, and the throttle cannot be turned into a lockout."""

from __future__ import annotations

import asyncio

import httpx
import jwt
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware

from sfduck_core.service import Service
from sfduck_core.sessions import resolve_session_key
from sfduck_server.proxies import ClientAddress, TrustedProxies
from sfduck_server.session_cookie import session_cookie_routes
from sfduck_ui.auth import SESSION_COOKIE, SESSION_COOKIE_ROUTE
from tests.integration.test_api import PASSWORDS, api, service, token

__all__ = ["api", "service"]  # the fixtures, shared with test_api


def test_logout_revokes_the_presented_token_only(api: TestClient) -> None:
    first, second = token(api, "ops"), token(api, "ops")
    assert api.get("/schedules", headers=first).status_code == 200
    out = api.post("/auth/logout", headers=first)
    assert out.status_code == 204
    refused = api.get("/schedules", headers=first)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert api.post("/auth/logout", headers=first).status_code == 401  # a revoked token cannot log out again
    assert api.get("/schedules", headers=second).status_code == 200  # the user's other sessions stay
    assert api.post("/auth/logout").status_code == 401


def test_a_token_with_a_non_finite_expiry_is_refused(api: TestClient, service: Service) -> None:
    """Forged with the installation's key (the worst case): NaN or infinite `exp` never expired."""
    good = token(api, "ops")["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(good, options={"verify_signature": False})
    key = resolve_session_key(None, service.settings.duckdb_path.parent)  # the installation's key file
    for exp in (float("nan"), float("inf")):
        forged = jwt.encode({**claims, "exp": exp}, key, algorithm="HS256")
        answer = api.get("/schedules", headers={"Authorization": f"Bearer {forged}"})
        assert answer.status_code == 401, exp


def test_the_session_cookie_is_secure_behind_a_trusted_https_proxy(service: Service) -> None:
    """Issue 18 item 9: Secure when the request came over https; X-Forwarded-Proto counts only from
    a proxy listed in SFDUCK_TRUSTED_PROXIES (here 10.0.0.5)."""
    app = Starlette(routes=session_cookie_routes(lambda: service, SESSION_COOKIE, SESSION_COOKIE_ROUTE),
                    middleware=[Middleware(ClientAddress, proxies=lambda: TrustedProxies.of(("10.0.0.5",)))])
    token, _ = service.login("ops", PASSWORDS["ops"], None)

    async def set_cookie(peer: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://sfduck.test") as client:
            return await client.post(SESSION_COOKIE_ROUTE, json={"token": token},
                                     headers={"X-Forwarded-Proto": "https"})

    behind_the_proxy, direct = asyncio.run(set_cookie("10.0.0.5")), asyncio.run(set_cookie("10.0.0.9"))
    assert behind_the_proxy.status_code == direct.status_code == 204
    assert "; secure" in behind_the_proxy.headers["set-cookie"].lower()
    assert "; secure" not in direct.headers["set-cookie"].lower()
    assert "httponly" in behind_the_proxy.headers["set-cookie"].lower()
