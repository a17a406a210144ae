"""Property-based tests of the whole HTTP API from its own OpenAPI: whatever a client
sends, the answer is never a server error. (Schemathesis generates the requests;
its pytest plugin does not load under pytest 9, so the cases are driven with
Hypothesis directly, operation by operation.)"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import KEY_A

pytestmark = pytest.mark.usefixtures("worker")


def operations(api_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_input_makes_a_server_error(api_url: str) -> None:
    tried = []
    for operation in operations(api_url):
        tried.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(
                base_url=api_url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=15
            )
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        check()
    assert "POST /v1/jobs" in tried and "GET /v1/jobs/{job_id}/events" in tried
