"""Property-based tests of the API from its own OpenAPI document (schemathesis): for generated
requests to every operation, as an admin, no 5xx and every response as the document promises."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette

from sfduck_core.service import Service
from sfduck_server.api import API_PREFIX, ApiPrefix, create_api
from tests.integration.test_api import service, token  # noqa: F401 (the service fixture)

MAX_EXAMPLES = 12  # per operation: bounded so the whole run stays well under a minute
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


def test_no_server_errors_and_responses_match_the_schema(service: Service) -> None:  # noqa: F811
    app = ApiPrefix(Starlette(), create_api(lambda: service))
    client = TestClient(app, base_url="http://testserver" + API_PREFIX)
    admin = token(client, "ops")
    schema = schemathesis.openapi.from_asgi(f"{API_PREFIX}/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    tried: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def check(case: schemathesis.Case) -> None:
            # logging out revokes the token it presents: give it one of its own each time
            fresh = case.operation.label == "POST /auth/logout"
            case.call_and_validate(headers=token(client, "ops") if fresh else admin, checks=CHECKS)

        check()
        tried.append(operation.label)
    assert "POST /sync/start" in tried and "GET /sync/jobs" in tried
