"""Fuzz requests for a model keyed by two join keys (fraud: `order_id` and `customer_id`), and the
path variants that send a scoring request through KServe's full FastAPI stack instead of the
server's fast path (a query string): hypothesis strategies for tests/serving/test_server_fuzz.py."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from mlops_assets.model_config import model_configs
from tests.serving.fuzz_bodies import JSON, TIMESTAMPS, dump, ids
from tests.serving.fuzz_requests import CONTENT_TYPES, Request

FRAUD = model_configs()["fraud"]
FRAUD_V1 = f"/v1/models/{FRAUD.name}:predict"
FRAUD_V2 = f"/v2/models/{FRAUD.name}/infer"
KEYS = tuple(FRAUD.join_keys)  # order_id, customer_id
# A query string sends a scoring request through the full stack (the fast path takes none).
FULL_STACK = "?via=full"


def via(path: str, full_stack: bool) -> str:
    return path + FULL_STACK if full_stack else path


def _v1(pairs: list[tuple[int, int]], stamp: str | None) -> dict:
    extra = {} if stamp is None else {"request_ts": stamp}
    return {"instances": [{**dict(zip(KEYS, pair, strict=True)), **extra} for pair in pairs]}


def _v2(pairs: list[tuple[int, int]], stamp: str | None) -> dict:
    n = len(pairs)
    inputs: list[dict[str, Any]] = [
        {"name": key, "shape": [n], "datatype": "INT64", "data": [p[i] for p in pairs]}
        for i, key in enumerate(KEYS)
    ]
    if stamp is not None:
        inputs.append(
            {"name": "request_ts", "shape": [n], "datatype": "BYTES", "data": [stamp] * n}
        )
    return {"inputs": inputs}


@st.composite
def fraud_request(draw: st.DrawFn, pairs: list[tuple[int, int]], request_ts: str) -> Request:
    """A fraud request over V1 or V2, through the fast path or the full stack: valid (known
    (order, customer) pairs as of the last orders' time: must score), or with one mutation of a
    key, the time, the envelope or the body."""
    batch = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3))
    v2 = draw(st.booleans())
    path = via(FRAUD_V2 if v2 else FRAUD_V1, draw(st.booleans()))
    mutation = draw(
        st.sampled_from(
            ["none", "none", "none", "key", "key", "drop", "ts", "unknown", "swap", "extra",
             "json", "bytes", "content_type"]
        )
    )  # fmt: skip
    content_type = "application/json"
    if mutation == "bytes":
        data = draw(st.binary(max_size=120))
    else:
        body = _mutated(draw, mutation, batch, v2, request_ts, [c for _, c in pairs])
        data = dump(body).encode()
    if mutation == "content_type":
        content_type = draw(CONTENT_TYPES)
    return Request("POST", path, data, content_type, valid=mutation == "none")


def _mutated(
    draw: st.DrawFn, mutation: str, batch: list, v2: bool, request_ts: str, known: list[int]
) -> Any:
    """A valid body for `batch`, with `mutation` applied."""
    body: Any = (_v2 if v2 else _v1)(batch, request_ts)
    if mutation == "key":  # a key's value: any id, a string, a float, a list, ...
        key = draw(st.sampled_from(KEYS))
        value = draw(ids(known))
        if v2:
            body["inputs"][KEYS.index(key)]["data"][0] = value
        else:
            body["instances"][0][key] = value
    elif mutation == "drop":  # one of the two keys missing
        key = draw(st.sampled_from(KEYS))
        if v2:
            body["inputs"] = [t for t in body["inputs"] if t["name"] != key]
        else:
            del body["instances"][0][key]
    elif mutation == "ts":
        stamp = draw(TIMESTAMPS)
        if v2:
            body["inputs"][-1]["data"] = [stamp] * len(batch)
        else:
            body["instances"][0]["request_ts"] = stamp
    elif mutation == "unknown":  # an order (or customer) with no online features
        order, customer = batch[0]
        unknown = draw(st.integers(min_value=10**12, max_value=2**63 - 1))
        pair = draw(st.sampled_from([(unknown, customer), (order, unknown), (unknown, unknown)]))
        body = (_v2 if v2 else _v1)([pair, *batch[1:]], request_ts)
    elif mutation == "swap":  # the customer alone, as the one-key model is asked
        body = (_v2 if v2 else _v1)(batch, request_ts)
        if v2:
            body["inputs"] = body["inputs"][1:]
        else:
            body["instances"] = [{"customer_id": c} for _, c in batch]
    elif mutation == "extra":
        if v2:
            body["inputs"][0][draw(st.sampled_from(["unit", "parameters"]))] = draw(JSON)
        else:
            body["instances"][0][draw(st.text(max_size=8))] = draw(JSON)
    elif mutation == "json":
        body = draw(JSON)
    return body


@st.composite
def full_stack_request(draw: st.DrawFn, base: st.SearchStrategy) -> Request:
    """A request of `base` sent through the full stack when it is a scoring request."""
    req = draw(base)
    if req.method == "POST" and "?" not in req.path and draw(st.booleans()):
        req.path = req.path + FULL_STACK
    return req
