"""Schemathesis over the app's own OpenAPI schema: generated requests to every operation (valid
and invalid paths, queries and bodies), as an ML engineer of the tenant and with no token; no
answer may be a 5xx, and every 4xx is JSON with a message. The runs routes talk to a real
dagster-webserver (runs queue there, nothing executes)."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from tests.api.conftest import auth

pytestmark = pytest.mark.slow
SEEN: Counter = Counter()  # answers by status class (2, 4, 5)
EXAMPLES = 8  # per operation and mode; each case is sent with and without a token


@pytest.fixture(scope="module")
def api_schema(world, dagster_webserver):
    from mlops_assets.api.app import create_app
    from mlops_assets.api.ratelimit import MemoryRateLimiter
    from tests.api.conftest import api_settings

    app = create_app(
        api_settings(world["access"], dagster_url=dagster_webserver),
        world["resources"],
        MemoryRateLimiter(limit=1_000_000, window_seconds=60),
    )
    return schemathesis.openapi.from_asgi("/v1/openapi.json", app)


def errors_are_json(ctx, response, case) -> None:
    SEEN[response.status_code // 100] += 1
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and body.get("error"), response.text


def _fuzz(operation, mode: GenerationMode, examples: int, **overrides) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, **overrides))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:
        for headers in (auth(), {}):
            case.call_and_validate(headers=headers, checks=[not_a_server_error, errors_are_json])

    try:
        run()
    except Unsatisfiable:  # nothing in the operation to break (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_no_generated_request_gets_a_5xx(api_schema):
    """Every operation, with data that fits its schema and data that does not."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, EXAMPLES)
        if "{model}" in operation.path:  # random names are 404s: also the tenant's real model
            _fuzz(operation, GenerationMode.POSITIVE, EXAMPLES, path_parameters={"model": "churn"})
    assert SEEN[5] == 0 and SEEN[2] > 0 and SEEN[4] > 0
    assert sum(SEEN.values()) >= 2 * len(operations) * EXAMPLES
    print(f"schemathesis: {sum(SEEN.values())} requests, by status class {dict(SEEN)}")


def test_the_schema_names_every_domain(api_schema):
    paths = set(api_schema.raw_schema["paths"])
    for prefix in ("/v1/models", "/v1/deployments", "/v1/runs", "/v1/monitoring", "/v1/tables"):
        assert any(p.startswith(prefix) for p in paths), prefix
    assert "HTTPBearer" in api_schema.raw_schema["components"]["securitySchemes"]
