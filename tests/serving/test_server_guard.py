"""The model server's request guard as plain ASGI (no server, no world): what it rejects before
KServe sees a request, and how an exception escaping the app is answered (400 while the client's
request is still being parsed, 500 with a traceback in the log once the predictor accepted it)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from mlops_assets.serving.guard import RequestGuard
from mlops_assets.serving.metrics import ERRORS
from mlops_assets.serving.requests import REQUEST, accepted

V1 = "/v1/models/churn:predict"
V2 = "/v2/models/churn/infer"
GOOD_V1 = json.dumps({"instances": [{"customer_id": 1}]}).encode()


def _count(reason: str, model: str = "churn") -> float:
    return ERRORS.labels(model, reason)._value.get()


def _run(
    app: Any,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    chunks: int = 1,
    max_bytes: int = 4000,
) -> tuple[int | None, dict | None, dict]:
    """Send one request through the guard; returns status, JSON answer, and what the app saw."""
    seen: dict[str, Any] = {}

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        seen["headers"] = dict(scope["headers"])
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen["body"] = b"".join(parts)
        await app(scope, receive, send)

    guard = RequestGuard(inner, max_bytes=max_bytes, models=frozenset({"churn"}))
    size = max(1, -(-len(body) // chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if chunks == 1:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": raw_headers}
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, (json.loads(payload) if payload else None), seen


async def ok(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_a_valid_request_reaches_the_app_as_plain_json():
    status, _, seen = _run(ok, V1, GOOD_V1, {"content-type": "application/json; charset=utf-8"})
    assert status == 200 and seen["body"] == GOOD_V1
    assert seen["headers"][b"content-type"] == b"application/json"
    status, _, seen = _run(ok, V1, GOOD_V1, chunks=3)  # no content-type, chunked
    assert status == 200 and seen["body"] == GOOD_V1
    assert seen["headers"][b"content-type"] == b"application/json"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason", "message"),
    [
        (V1, GOOD_V1, {"content-type": "text/plain"}, 415, "unsupported_media_type", "text/plain"),
        (V2, b"{}", {"ce-specversion": "1.0"}, 415, "unsupported_media_type", "CloudEvents"),
        (V1, b"x" * 4001, None, 413, "payload_too_large", "4000 bytes"),
        (V1, b'{"instances": [NaN]}', None, 400, "invalid_json", "NaN is not valid JSON"),
        (V1, b'{"instances": [-Infinity]}', None, 400, "invalid_json", "-Infinity"),
        (V1, b"[" * 1500 + b"]" * 1500, None, 400, "invalid_json", "not valid JSON"),
        (V1, b'"\xff"', None, 400, "invalid_json", "UTF-8"),
        (V1, b'"\\ud800"', None, 400, "invalid_json", "surrogate"),
        (V1, b"   ", None, 400, "invalid_json", "empty"),
        (V1, b"null", None, 400, "invalid_input", "got null"),
        (V2, b'{"inputs": [{"name": "customer_id", "shape": [true], "datatype": "INT64", '
             b'"data": [1]}]}', None, 400, "invalid_input", "list of integers"),
        (V2, b'{"inputs": [], "id": 3}', None, 400, "invalid_input", "'id' must be a string"),
        (V2, b'{"inputs": [], "outputs": [{"name": 1}]}', None, 400, "invalid_input",
         "outputs[0].name"),
        ("/v2/repository/models/fraud/load", b"", None, 404, "unknown_model", "fraud"),
    ],
)  # fmt: skip
def test_the_guard_rejects_before_kserve_parses(path, body, headers, status, reason, message):
    label = "*" if "repository" in path else "churn"
    before = _count(reason, label)
    got, answer, seen = _run(ok, path, body, headers, chunks=2 if len(body) > 4000 else 1)
    assert got == status and answer["reason"] == reason and message in answer["error"], answer
    assert not seen  # the app never saw it
    assert _count(reason, label) == before + 1


def test_an_exception_while_parsing_the_request_is_a_400():
    async def broken_parser(scope: dict, receive: Any, send: Any) -> None:
        int("x")  # e.g. a decoder choking on a header the client sent

    before = _count("invalid_input")
    status, answer, _ = _run(broken_parser, V1, GOOD_V1)
    assert status == 400 and answer["reason"] == "invalid_input"
    assert "could not be parsed" in answer["error"] and "ValueError" in answer["error"]
    assert _count("invalid_input") == before + 1


def test_a_server_fault_after_the_request_was_accepted_stays_a_500(caplog):
    async def broken_model(scope: dict, receive: Any, send: Any) -> None:
        accepted()  # the predictor validated the request
        raise RuntimeError("the model store is gone")

    before = _count("internal_error")
    with caplog.at_level(logging.ERROR, logger="mlops.serving"):
        status, answer, _ = _run(broken_model, V1, GOOD_V1)
    assert status == 500 and answer["reason"] == "internal_error"
    assert "RuntimeError" in answer["error"] and "model store" not in answer["error"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info and "the model store is gone" in str(record.exc_info[1])
    assert _count("internal_error") == before + 1
    assert REQUEST.get() is None  # the per-request state does not leak


def test_a_fault_outside_the_inference_routes_is_a_500():
    async def broken_metrics(scope: dict, receive: Any, send: Any) -> None:
        raise KeyError("registry")

    status, answer, _ = _run(broken_metrics, "/metrics", method="GET")
    assert status == 500 and answer["reason"] == "internal_error"


def test_an_exception_after_the_answer_started_is_not_answered_twice():
    async def half_answer(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        _run(half_answer, V1, GOOD_V1)
