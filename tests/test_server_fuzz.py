"""Property-based fuzzing of the model server (hypothesis): over a thousand generated requests to the
V1 and V2 endpoints (random JSON, near-valid V1/V2 bodies with wrong types, shapes, datatypes,
out-of-range ids, bad timestamps, extra fields, raw NaN/Infinity tokens, raw bytes, wrong content
types, chunked bodies, and valid requests mixed in) over a few keep-alive connections.

Every answer is < 500; every 4xx is JSON with an `error` message and a `reason`; no connection is
closed by the server; valid requests score; /metrics counted every rejection by its reason.

Reproducible in CI (derandomized). For a fresh random search locally:

    MLOPS_FUZZ_SEED=$RANDOM .venv/bin/pytest tests/test_server_fuzz.py
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import json
import os
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mlops_assets.serving.predictor import REASONS
from tests.serving_world import BASE, REQUEST_TS, customers, error_counts, served_shop

pytestmark = pytest.mark.slow

# Each example sends 3 to 6 requests: 400 examples are at least 1,200 requests.
EXAMPLES = int(os.environ.get("MLOPS_FUZZ_EXAMPLES", "400"))
SEED = os.environ.get("MLOPS_FUZZ_SEED")
MIN_REQUESTS = 1000
CONNECTIONS = 4
V1 = "/v1/models/churn:predict"
V2 = "/v2/models/churn/infer"
OUTPUT_NAMES = ["score", "prediction", "risk_band", "rule", "model_version", "arm"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    with served_shop(tmp_path_factory.mktemp("fuzz")) as world:
        world["known"] = customers(world, 200)
        yield world


# -- JSON with tokens plain json cannot write ---------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Written verbatim into the body: NaN, Infinity, numbers that overflow a double."""

    token: str


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


BAD_NUMBERS = st.sampled_from(
    [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-1e999"), Raw("-NaN")]
)
BIG_INTS = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1, 10**30])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    BIG_INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    BAD_NUMBERS,
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

TIMESTAMPS_BAD = st.sampled_from(
    [
        "May",
        "",
        "2025-13-01",
        "0001-01-01",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "2025-05-30T12:00:00+25:00",
        "2025-01-02T00:00:00+00:00",  # before every customer's features
        "2262-04-11T00:00:00Z",
        "2025-05-30T12:00:00.123456789",
    ]
)
TIMESTAMPS_OK = st.datetimes(
    min_value=dt.datetime(2025, 5, 29), max_value=dt.datetime(2262, 1, 1)
).map(lambda t: t.replace(tzinfo=dt.UTC).isoformat())
# Before the world's last snapshot: before the features of most customers.
TIMESTAMPS_EARLY = st.datetimes(
    min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2025, 5, 27)
).map(lambda t: t.replace(tzinfo=dt.UTC).isoformat())
TIMESTAMPS = st.one_of(
    st.none(), TIMESTAMPS_OK, TIMESTAMPS_EARLY, TIMESTAMPS_BAD, st.text(max_size=30), JSON
)


def ids(known: list[int]) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(known),
        st.integers(min_value=0, max_value=2**63 - 1),
        st.integers(min_value=-(2**70), max_value=2**70),
        BIG_INTS,
        JSON,
    )


# -- requests -------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    body: bytes
    content_type: str | None = "application/json"
    chunked: bool = False
    valid: bool = False  # a well-formed request for known customers: must be 200
    extra_headers: tuple[tuple[str, str], ...] = ()


def v1_body(known: list[int]) -> st.SearchStrategy:
    instance = st.one_of(
        st.fixed_dictionaries(
            {"customer_id": ids(known)},
            optional={"request_ts": TIMESTAMPS, "age": JSON},
        ),
        st.fixed_dictionaries({}, optional={"request_ts": TIMESTAMPS}),
        JSON,
    )
    instances = st.one_of(st.lists(instance, max_size=4), JSON)
    return st.one_of(
        st.fixed_dictionaries({"instances": instances}, optional={"id": JSON, "inputs": JSON}),
        JSON,
    )


@st.composite
def v2_tensor(draw: st.DrawFn, known: list[int]) -> dict:
    name = draw(
        st.one_of(
            st.sampled_from(["customer_id", "customer_id", "request_ts", "customer", "ID"]),
            JSON,
        )
    )
    if name == "request_ts":
        data = draw(st.one_of(st.lists(TIMESTAMPS, max_size=4), JSON))
        datatype = draw(st.one_of(st.just("BYTES"), st.sampled_from(["INT64", "bytes"]), JSON))
    else:
        data = draw(st.one_of(st.lists(ids(known), max_size=4), JSON))
        datatype = draw(
            st.one_of(
                st.just("INT64"),
                st.sampled_from(["INT32", "int64", "FP32", "FP16", "BYTES", "BOOL", "UINT64"]),
                JSON,
            )
        )
    n = len(data) if isinstance(data, list) else 1
    shape = draw(
        st.one_of(
            st.just([n]),
            st.lists(st.integers(min_value=-3, max_value=2**64), max_size=3),
            st.sampled_from([[n, 1], [1, n], [], [-1], ["1"], [True], [float(n)]]),
            JSON,
        )
    )
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    # Drop or null a field now and then, or add one.
    missing = draw(st.sampled_from([None, None, None, "name", "shape", "datatype", "data"]))
    if missing:
        if draw(st.booleans()):
            del tensor[missing]
        else:
            tensor[missing] = None
    extra = draw(st.dictionaries(st.sampled_from(["parameters", "unit", "raw"]), JSON, max_size=1))
    return {**tensor, **extra}


def v2_body(known: list[int]) -> st.SearchStrategy:
    outputs = st.one_of(
        st.lists(
            st.fixed_dictionaries({"name": st.sampled_from([*OUTPUT_NAMES, "prob"]) | JSON}),
            max_size=3,
        ),
        JSON,
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"inputs": st.one_of(st.lists(v2_tensor(known), max_size=3), JSON)},
            optional={
                "id": st.one_of(st.text(max_size=20), JSON),
                "parameters": st.one_of(st.dictionaries(st.text(max_size=8), SCALARS), JSON),
                "outputs": outputs,
                "instances": JSON,
            },
        ),
        JSON,
    )


@st.composite
def near_v1(draw: st.DrawFn, known: list[int]) -> dict:
    """A valid V1 body, then (mostly) one mutation: a wrong value, a missing or extra field."""
    fair_ids = st.one_of(st.sampled_from(known), st.integers(min_value=0, max_value=2**63 - 1))
    stamps = st.one_of(st.just(REQUEST_TS), TIMESTAMPS_OK, TIMESTAMPS_EARLY, TIMESTAMPS_BAD)
    instances = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        instance: dict[str, Any] = {"customer_id": draw(fair_ids)}
        if draw(st.booleans()):
            instance["request_ts"] = draw(stamps)
        instances.append(instance)
    body: dict[str, Any] = {"instances": instances}
    i = draw(st.integers(min_value=0, max_value=len(instances) - 1))
    mutation = draw(
        st.sampled_from(
            ["none", "id", "id", "ts", "ts", "extra", "drop", "instance", "instances", "top",
             "empty", "many"]
        )
    )  # fmt: skip
    if mutation == "id":
        instances[i]["customer_id"] = draw(ids(known))
    elif mutation == "ts":
        instances[i]["request_ts"] = draw(TIMESTAMPS)
    elif mutation == "extra":
        instances[i][draw(st.text(max_size=8))] = draw(JSON)
    elif mutation == "drop":
        del instances[i]["customer_id"]
    elif mutation == "instance":
        instances[i] = draw(JSON)
    elif mutation == "instances":
        body["instances"] = draw(JSON)
    elif mutation == "top":
        body[draw(st.sampled_from(["id", "inputs", "parameters", "instance"]))] = draw(JSON)
    elif mutation == "empty":
        body["instances"] = []
    elif mutation == "many":
        body["instances"] = instances[:1] * (BASE.serving.max_instances + 1)
    return body


@st.composite
def near_v2(draw: st.DrawFn, known: list[int]) -> dict:
    """A valid V2 body, then (mostly) one mutation of the envelope or a tensor."""
    batch = draw(
        st.lists(
            st.one_of(st.sampled_from(known), st.integers(min_value=0, max_value=2**63 - 1)),
            min_size=1,
            max_size=3,
        )
    )
    ids_tensor = {"name": "customer_id", "shape": [len(batch)], "datatype": "INT64", "data": batch}
    inputs = [ids_tensor]
    if draw(st.booleans()):
        stamp = draw(
            st.one_of(st.just(REQUEST_TS), TIMESTAMPS_OK, TIMESTAMPS_EARLY, TIMESTAMPS_BAD)
        )
        inputs.append(
            {"name": "request_ts", "shape": [len(batch)], "datatype": "BYTES",
             "data": [stamp] * len(batch)}
        )  # fmt: skip
    body: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=12))
    tensor = draw(st.sampled_from(inputs))
    mutation = draw(
        st.sampled_from(
            ["none", "value", "value", "name", "datatype", "shape", "shape", "drop", "null",
             "extra", "parameters", "twice", "id", "outputs", "top", "tensor", "inputs"]
        )
    )  # fmt: skip
    if mutation == "value":
        values = tensor["data"]
        values[draw(st.integers(min_value=0, max_value=len(values) - 1))] = draw(
            ids(known) if tensor["name"] == "customer_id" else TIMESTAMPS
        )
    elif mutation == "name":
        tensor["name"] = draw(st.one_of(st.sampled_from(["customer", "request_ts", ""]), JSON))
    elif mutation == "datatype":
        tensor["datatype"] = draw(
            st.one_of(st.sampled_from(["INT32", "int64", "FP32", "FP16", "BYTES", "UINT64"]), JSON)
        )
    elif mutation == "shape":
        tensor["shape"] = draw(
            st.one_of(
                st.lists(st.integers(min_value=-3, max_value=2**64), max_size=3),
                st.sampled_from([[len(batch), 1], [], [-1], ["1"], [True], [1.0], [None]]),
                JSON,
            )
        )
    elif mutation in ("drop", "null"):
        field = draw(st.sampled_from(["name", "shape", "datatype", "data"]))
        if mutation == "drop":
            del tensor[field]
        else:
            tensor[field] = None
    elif mutation == "extra":
        tensor[draw(st.sampled_from(["unit", "raw_data", "contents"]))] = draw(JSON)
    elif mutation == "parameters":
        target = draw(st.sampled_from([body, tensor]))
        target["parameters"] = draw(
            st.one_of(st.dictionaries(st.text(max_size=8), SCALARS, max_size=3), JSON)
        )
    elif mutation == "twice":
        inputs.append(dict(tensor))
    elif mutation == "id":
        body["id"] = draw(JSON)
    elif mutation == "outputs":
        body["outputs"] = draw(
            st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.one_of(st.sampled_from([*OUTPUT_NAMES, "prob"]), JSON)}
                    ),
                    max_size=3,
                ),
                JSON,
            )
        )
    elif mutation == "top":
        body[draw(st.sampled_from(["instances", "model", "data"]))] = draw(JSON)
    elif mutation == "tensor":
        inputs[inputs.index(tensor)] = draw(JSON)
    elif mutation == "inputs":
        body["inputs"] = draw(JSON)
    return body


@st.composite
def valid_request(draw: st.DrawFn, known: list[int]) -> Request:
    batch = draw(st.lists(st.sampled_from(known), min_size=1, max_size=3))
    when = draw(st.one_of(st.none(), st.just(REQUEST_TS), TIMESTAMPS_OK))
    content_type = draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", None])
    )
    if draw(st.booleans()):
        stamp = {} if when is None else {"request_ts": when}
        body = {"instances": [{"customer_id": c, **stamp} for c in batch]}
        path = V1
    else:
        inputs = [
            {"name": "customer_id", "shape": [len(batch)], "datatype": "INT64", "data": batch}
        ]
        if when is not None:
            inputs.append(
                {"name": "request_ts", "shape": [len(batch)], "datatype": "BYTES",
                 "data": [when] * len(batch)}
            )  # fmt: skip
        body = {"id": draw(st.text(max_size=10)), "inputs": inputs}
        path = V2
    return Request("POST", path, json.dumps(body).encode(), content_type, valid=True)


CONTENT_TYPES = st.one_of(
    st.just("application/json"),
    st.sampled_from(
        [
            None,
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/octet-stream",
            "application/cloudevents+json",
            "multipart/form-data; boundary=x",
            "application/xml",
            "",
        ]
    ),
)
PATHS = st.one_of(
    st.sampled_from([V1, V2]),
    st.sampled_from(
        [
            "/v1/models/churn:explain",
            "/v1/models/fraud:predict",
            "/v2/models/fraud/infer",
            "/v2/models/churn/versions/1/infer",
            "/v1/models/churn",
            "/v2/models/churn",
            "/v2/models/churn/ready",
            "/v2/repository/models/fraud/load",
            "/nothing",
        ]
    ),
    st.text(min_size=1, max_size=12).map(
        lambda name: "/v2/models/" + urllib.parse.quote(name, safe="") + "/infer"
    ),
)


@st.composite
def request(draw: st.DrawFn, known: list[int]) -> Request:
    kind = draw(
        st.sampled_from(
            ["valid", "valid", "near_v1", "near_v1", "near_v2", "near_v2", "near_v2", "v1", "v2",
             "json", "bytes", "odd"]
        )
    )  # fmt: skip
    if kind == "valid":
        return draw(valid_request(known))
    path = V1 if kind in ("near_v1", "v1") else V2
    if kind == "bytes":
        body = draw(st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode)))
        path = draw(st.sampled_from([V1, V2]))
    elif kind in ("json", "odd"):
        body = dump(draw(st.one_of(near_v1(known), near_v2(known), JSON))).encode()
        path = draw(st.sampled_from([V1, V2]))
    else:
        generate = {"near_v1": near_v1, "near_v2": near_v2, "v1": v1_body, "v2": v2_body}[kind]
        body = dump(draw(generate(known))).encode()
    method = "POST"
    extra: tuple[tuple[str, str], ...] = ()
    if kind == "odd":  # elsewhere: other paths, methods, oversized bodies, CloudEvent headers
        path = draw(PATHS)
        method = draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE"]))
        oddity = draw(st.sampled_from(["none", "huge", "ce", "binary"]))
        if oddity == "huge":
            body = b" " * (BASE.serving.max_body_bytes + 1) + body
        elif oddity == "ce":
            extra = (
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            )
        elif oddity == "binary":
            extra = (("inference-header-content-length", draw(st.sampled_from(["3", "x", "-1"]))),)
    # Mostly JSON, so that the body itself gets tested.
    content_type = draw(
        st.one_of(st.just("application/json"), st.just("application/json"), CONTENT_TYPES)
    )
    chunked = draw(st.integers(min_value=0, max_value=9)) == 0
    return Request(method, path, body, content_type, chunked, extra_headers=extra)


# -- the client -----------------------------------------------------------------------------------


class Pool:
    """A few keep-alive connections used in turn; a server-side close is a failure."""

    def __init__(self, port: int, size: int):
        self.connections = [
            http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(size)
        ]
        self._next = itertools.cycle(range(size))
        self.sent = 0
        self.statuses: Counter[int] = Counter()
        self.reasons: Counter[str] = Counter()

    def send(self, req: Request) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = self.connections[next(self._next)]
        headers = dict(req.extra_headers)
        if req.content_type is not None:
            headers["content-type"] = req.content_type
        if req.chunked and req.method in ("POST", "PUT"):
            conn.request(req.method, req.path, iter([req.body]), headers, encode_chunked=True)
        else:
            conn.request(req.method, req.path, req.body if req.method != "GET" else None, headers)
        response = conn.getresponse()
        raw = response.read()
        self.sent += 1
        self.statuses[response.status] += 1
        return response.status, raw, response

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def check(req: Request, status: int, raw: bytes, response: http.client.HTTPResponse, pool: Pool):
    shown = (
        f"{req.method} {req.path} {req.content_type!r} {req.body[:300]!r} -> {status} {raw[:300]!r}"
    )
    assert status < 500, shown
    assert not response.will_close, f"the server closed the connection: {shown}"
    if req.valid:
        assert status == 200, shown
    if status >= 400:
        answer = json.loads(raw)
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), shown
        assert answer["error"] and answer.get("reason") in REASONS, shown
        pool.reasons[answer["reason"]] += 1
    elif req.path in (V1, V2) and req.method == "POST":
        answer = json.loads(raw)
        assert answer.get("predictions") or answer.get("outputs"), shown


def test_fuzzed_requests_never_get_a_5xx_and_every_rejection_is_counted(shop):
    pool = Pool(shop["port"], CONNECTIONS)
    metrics = http.client.HTTPConnection("127.0.0.1", shop["port"], timeout=30)

    def error_totals() -> dict[str, float]:
        metrics.request("GET", "/metrics")
        return error_counts(metrics.getresponse().read().decode())

    before = error_totals()
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
        # The server still scores after everything it was sent, on the same connections.
        for _ in range(CONNECTIONS):
            status, raw, _ = pool.send(
                Request(
                    "POST",
                    V1,
                    json.dumps({"instances": [{"customer_id": shop["known"][0]}]}).encode(),
                )
            )
            assert status == 200, raw
    finally:
        pool.close()
    elapsed = time.perf_counter() - started
    after = error_totals()
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
    for reason in (
        "invalid_json",
        "invalid_input",
        "unsupported_media_type",
        "payload_too_large",
        "unknown_customer",
        "request_before_features",
    ):
        assert pool.reasons[reason] > 0, f"the fuzzer never produced {reason}"
