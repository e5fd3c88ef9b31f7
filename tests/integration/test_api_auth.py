"""Issue 18: the API's logins and tokens as an attacker meets them: logout revokes the presented
token, tokens with a non-finite expiry are refused, and the throttle cannot be turned into a lockout."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from sfduck_core.config import Settings
from sfduck_core.service import Service, build_service
from sfduck_core.sessions import resolve_session_key
from tests.integration.test_api import client_for, token, write_users


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    write_users(tmp_path / "users.yaml")
    svc = build_service(dataclasses.replace(settings, users_file=tmp_path / "users.yaml"))
    yield svc
    svc.shutdown(10)


@pytest.fixture
def api(service: Service) -> TestClient:
    return client_for(service)


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
