"""The requests the model-server fuzz test sends (hypothesis strategies) and the client that sends
them: near-valid and random V1/V2 bodies, raw bytes, odd paths, methods, content types and
headers, chunked bodies, and valid requests mixed in."""

from __future__ import annotations

import http.client
import itertools
import json
import urllib.parse
from collections import Counter
from dataclasses import dataclass

from hypothesis import strategies as st

from mlops_assets.serving.metrics import REASONS
from tests.serving.fuzz_bodies import (
    JSON,
    TIMESTAMPS_OK,
    dump,
    near_v1,
    near_v2,
    v1_body,
    v2_body,
)
from tests.serving.serving_world import BASE, REQUEST_TS, V1, V2

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
            f"/v1/models/{BASE.name}:explain",
            "/v1/models/fraud:predict",
            "/v2/models/fraud/infer",
            f"/v2/models/{BASE.name}/versions/1/infer",
            f"/v1/models/{BASE.name}",
            f"/v2/models/{BASE.name}",
            f"/v2/models/{BASE.name}/ready",
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
    elif req.method == "POST" and req.path.split("?")[0].endswith((":predict", "/infer")):
        answer = json.loads(raw)
        assert answer.get("predictions") or answer.get("outputs"), shown
