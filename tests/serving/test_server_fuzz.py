"""Property-based fuzzing of the model server (hypothesis): over a thousand generated requests to the
V1 and V2 endpoints (random JSON, near-valid V1/V2 bodies with wrong types, shapes, datatypes,
out-of-range ids, bad timestamps, extra fields, raw NaN/Infinity tokens, raw bytes, wrong content
types, chunked bodies, and valid requests mixed in) over a few keep-alive connections.

Every answer is < 500; every 4xx is JSON with an `error` message and a `reason`; no connection is
closed by the server; valid requests score; /metrics counted every rejection by its reason.

Reproducible in CI (derandomized). For a fresh random search locally:

    MLOPS_FUZZ_SEED=$RANDOM .venv/bin/pytest tests/serving/test_server_fuzz.py
"""

from __future__ import annotations

import http.client
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.serving.fuzz_requests import V1, Pool, Request, check, request
from tests.serving.serving_world import customers, error_counts, served_shop

pytestmark = pytest.mark.slow

# Each example sends 3 to 6 requests: 400 examples are at least 1,200 requests.
EXAMPLES = int(os.environ.get("MLOPS_FUZZ_EXAMPLES", "400"))
SEED = os.environ.get("MLOPS_FUZZ_SEED")
MIN_REQUESTS = 1000
CONNECTIONS = 4
# Every one of these must come back from the server at least once over a run.
EXPECTED_REASONS = (
    "invalid_json",
    "invalid_input",
    "unsupported_media_type",
    "payload_too_large",
    "unknown_customer",
    "request_before_features",
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    with served_shop(tmp_path_factory.mktemp("fuzz")) as world:
        world["known"] = customers(world, 200)
        yield world


def error_totals(metrics: http.client.HTTPConnection) -> dict[str, float]:
    metrics.request("GET", "/metrics")
    return error_counts(metrics.getresponse().read().decode())


def assert_still_scores(pool: Pool, customer: int) -> None:
    """The server still scores after everything it was sent, on the same connections."""
    for _ in range(CONNECTIONS):
        status, raw, _ = pool.send(
            Request("POST", V1, json.dumps({"instances": [{"customer_id": customer}]}).encode())
        )
        assert status == 200, raw


def test_fuzzed_requests_never_get_a_5xx_and_every_rejection_is_counted(shop):
    pool = Pool(shop["port"], CONNECTIONS)
    metrics = http.client.HTTPConnection("127.0.0.1", shop["port"], timeout=30)
    before = error_totals(metrics)
    started = time.perf_counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(request(shop["known"]), min_size=3, max_size=6))
    def fuzz(requests: list[Request]) -> None:
        for req in requests:
            status, raw, response = pool.send(req)
            check(req, status, raw, response, pool)

    if SEED is not None:
        fuzz = seed(int(SEED))(fuzz)
    try:
        fuzz()
        assert_still_scores(pool, shop["known"][0])
    finally:
        pool.close()
    elapsed = time.perf_counter() - started
    after = error_totals(metrics)
    metrics.close()

    print(
        f"\nfuzz: {pool.sent} requests in {elapsed:.1f} s; statuses {dict(sorted(pool.statuses.items()))}; "
        f"reasons {dict(pool.reasons.most_common())}"
    )
    assert pool.sent >= MIN_REQUESTS, pool.sent
    assert not [s for s in pool.statuses if s >= 500]
    assert pool.statuses[200] >= 100, pool.statuses  # valid requests were mixed in and scored
    counted = {r: after.get(r, 0) - before.get(r, 0) for r in set(after) | set(before)}
    assert {r: n for r, n in counted.items() if n} == dict(pool.reasons), (counted, pool.reasons)
    for reason in EXPECTED_REASONS:
        assert pool.reasons[reason] > 0, f"the fuzzer never produced {reason}"
