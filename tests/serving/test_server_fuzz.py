"""Property-based fuzzing of the model server (hypothesis): over a thousand generated requests to the
V1 and V2 endpoints (random JSON, near-valid V1/V2 bodies with wrong types, shapes, datatypes,
out-of-range ids, bad timestamps, extra fields, raw NaN/Infinity tokens, raw bytes, wrong content
types, chunked bodies, and valid requests mixed in) over a few keep-alive connections, to churn
(one join key) and to fraud (two: order_id and customer_id) served side by side, each scoring
request through the server's fast path or (with a query string) KServe's full FastAPI stack.

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
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
from mlops_assets.serving.rollout import deploy
from mlops_assets.testing import register_quick_champion
from tests.serving.fuzz_fraud import FRAUD, FULL_STACK, fraud_request, full_stack_request
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
    "unknown_entity",
    "request_before_features",
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The served shop (churn, champion and challenger) with a fraud champion deployed beside
    it; the last materialized day's (order, customer) pairs and their time (order rows have a
    1-day TTL)."""
    with served_shop(tmp_path_factory.mktemp("fuzz")) as world:
        world["known"] = customers(world, 200)
        res, registry = world["resources"], world["registry"]
        labels = Labels.of(FRAUD)
        dataset = world["dataset"].parent / "fraud_dataset"
        build_training_set(world["store"], labels, load_labels(res.warehouse, labels), dataset)
        register_quick_champion(registry, FRAUD, dataset)
        orders = res.warehouse.query(
            "select order_id, customer_id, event_timestamp from gold.order_features "
            "where cast(event_timestamp as date) = "
            "(select max(cast(event_timestamp as date)) from gold.order_features) "
            "order by order_id limit 100"
        )
        world["pairs"] = [
            (int(o), int(c)) for o, c in zip(orders["order_id"], orders["customer_id"], strict=True)
        ]
        stamp = orders["event_timestamp"].max()
        world["fraud_ts"] = stamp.tz_localize("UTC").isoformat()
        deploy(registry, world["deployer"], FRAUD, actor="test", reason="fuzz beside churn")
        try:
            yield world
        finally:
            world["deployer"].stop(FRAUD.name)


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

    scored: Counter[tuple[str, bool, int]] = Counter()
    requests = st.one_of(
        full_stack_request(request(shop["known"])),
        fraud_request(shop["pairs"], shop["fraud_ts"]),
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(requests, min_size=3, max_size=6))
    def fuzz(requests: list[Request]) -> None:
        for req in requests:
            status, raw, response = pool.send(req)
            check(req, status, raw, response, pool)
            model = FRAUD.name if f"/{FRAUD.name}" in req.path else "churn"
            scored[model, FULL_STACK in req.path, status] += 1

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
    # Both models scored and were refused, through the fast path and through the full stack.
    for model in ("churn", FRAUD.name):
        for full_stack in (False, True):
            assert scored[model, full_stack, 200] > 0, (model, full_stack, scored)
            assert sum(n for (m, f, s), n in scored.items() if (m, f) == (model, full_stack)
                       and 400 <= s < 500) > 0, (model, full_stack, scored)  # fmt: skip
