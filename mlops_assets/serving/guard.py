"""The server's front door: ASGI middleware that answers a client's mistake itself, before
anything parses the body: a body over the limit (413), a content type that is not JSON (415), a
body that is not the V1 or V2 envelope (400), an unknown model or route (404). Each rejection is a
JSON `{"error", "reason"}`, one log line and a count by reason in /metrics; the connection stays
open. An exception escaping the app is a 400 while the request is still being read, else a 500."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from mlops_assets.serving.envelopes import (
    Rejection,
    check_v1_envelope,
    check_v2_envelope,
    parse_json,
)

log = logging.getLogger("mlops.serving")

_V1_INFER = re.compile(r"/v1/models/(?P<model>[^/]+):(?:predict|explain)")
_V2_INFER = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/[^/]+)?/infer")
_V2_VERSIONS = re.compile(r"/v2/models/(?P<model>[^/]+)/versions/.*")
_REPOSITORY = re.compile(r"/v2/repository/models/(?P<model>[^/]+)/(?:load|unload)")
_MODEL_IN_PATH = re.compile(r"/v[12]/models/(?P<model>[^/:]+)")


class RequestGuard:
    """ASGI middleware in front of KServe's routes. Per request it costs one body read, one orjson
    parse and a walk over the envelope (microseconds; the data arrays are left to the predictor):

    - a body over `max_bytes` (one limit, or one per model: a model's routes take its own, other
      routes the largest): 413, before anything parses it;
    - on the inference routes (POST `/v1/models/<m>:predict|:explain`, `/v2/models/<m>/infer`):
      a content type other than JSON (or a CloudEvent): 415; a body that is not strict JSON
      (syntax, NaN/Infinity, invalid UTF-8, empty, nested too deep): 400 `invalid_json`; JSON
      that is not a V1/V2 request envelope (wrong or missing fields, wrong JSON types): 400
      `invalid_input`. What passes reaches KServe as plain `application/json`;
    - an exception escaping the app is answered here, so the connection stays usable: 400 when it
      was raised while the client's request was still being parsed and validated (before the
      predictor accepted it), else 500 with the traceback in the log (a server fault).

    Every rejection is counted in `mlops_prediction_errors_total{model,reason}`.
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int | Mapping[str, int],
        models: frozenset[str] = frozenset(),
    ):
        from mlops_assets.serving.metrics import ERRORS
        from mlops_assets.serving.requests import REQUEST, RequestState

        self.app = app
        if isinstance(max_bytes, Mapping):
            self._limits, self.max_bytes = dict(max_bytes), max(max_bytes.values())
        else:
            self._limits, self.max_bytes = {}, max_bytes
        self.models = models
        self._errors, self._request, self._state = ERRORS, REQUEST, RequestState

    def model_label(self, path: str) -> str:
        match = _MODEL_IN_PATH.match(path)
        return match["model"] if match and match["model"] in self.models else "*"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "")
        infer = method == "POST" and (_V1_INFER.fullmatch(path) or _V2_INFER.fullmatch(path))
        # Until the predictor accepts the request, an exception is blamed on the request.
        state = self._state(accepted=not (infer or _V2_VERSIONS.fullmatch(path)))
        token = self._request.set(state)
        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            try:
                scope, receive = await self._screen(scope, receive, path, method, bool(infer))
            except Rejection as rejection:
                return await self._reject(send, path, rejection)
            if scope is None:  # the client went away before sending its body
                return None
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            if started:
                raise  # too late for another answer; uvicorn closes the connection
            if not state.accepted:
                log.warning(
                    "400 invalid_input: %s while parsing a request to %s (%s): %s",
                    type(exc).__name__,
                    path,
                    _raised_at(exc),
                    exc,
                )
                message = f"the request could not be parsed: {type(exc).__name__}: {exc}"[:300]
                return await self._reject(send, path, Rejection(400, "invalid_input", message))
            log.error("500 on %s %s", method, path, exc_info=exc)
            return await self._reject(
                send,
                path,
                Rejection(500, "internal_error", f"internal server error ({type(exc).__name__})"),
            )
        finally:
            self._request.reset(token)
        return None

    def _limit(self, path: str) -> int:
        if not self._limits:
            return self.max_bytes
        match = _MODEL_IN_PATH.match(path)
        return self._limits.get(match["model"], self.max_bytes) if match else self.max_bytes

    async def _screen(
        self, scope: dict, receive: Any, path: str, method: str, infer: bool
    ) -> tuple[dict | None, Any]:
        """Check the request before the app sees it; returns the scope and receive to go on
        with (scope None: the client disconnected)."""
        headers = scope.get("headers") or []
        declared = None
        for key, value in headers:
            if key == b"content-length":
                declared = value
        limit = self._limit(path)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise self._too_large(limit)
        repository = _REPOSITORY.fullmatch(path)
        if method == "POST" and repository and repository["model"] not in self.models:
            raise Rejection(
                404,
                "unknown_model",
                f"this server serves {sorted(self.models)}, not {repository['model']!r}",
            )
        if infer:
            _check_content_type(headers)
            body = await self._read_body(receive, limit)
            if body is None:
                return None, receive
            payload = parse_json(body)
            if _V1_INFER.fullmatch(path):
                check_v1_envelope(payload)
            else:
                check_v2_envelope(payload)
            scope = {**scope, "headers": _as_json(headers)}
            return scope, replay(body, receive)
        # Chunked bodies have no length up front: read up to the limit before passing it on.
        if declared is None and method in ("POST", "PUT"):
            body = await self._read_body(receive, limit)
            if body is None:
                return None, receive
            return scope, replay(body, receive)
        return scope, receive

    async def _read_body(self, receive: Any, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise self._too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _too_large(self, limit: int) -> Rejection:
        return Rejection(413, "payload_too_large", f"request body over the limit of {limit} bytes")

    async def _reject(self, send: Any, path: str, rejection: Rejection) -> None:
        self._errors.labels(self.model_label(path), rejection.reason).inc()
        if rejection.status < 500:
            log.info("%d %s: %s", rejection.status, rejection.reason, rejection.message)
        body = json.dumps({"error": rejection.message, "reason": rejection.reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": rejection.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that hands out `body` (already read) first, then defers to `receive`."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _check_content_type(headers: list[tuple[bytes, bytes]]) -> None:
    for key, value in headers:
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media != b"application/json":
                shown = value.decode("latin-1")[:60]
                raise Rejection(
                    415,
                    "unsupported_media_type",
                    f"content-type {shown!r} is not supported: send a JSON body with "
                    "content-type: application/json",
                )
        elif key == b"ce-specversion":
            raise Rejection(
                415,
                "unsupported_media_type",
                "CloudEvents are not supported: send a plain JSON body (application/json)",
            )


def _as_json(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with exactly `content-type: application/json`, the one spelling KServe's V1
    decoder recognises (it compares the whole header, charset included)."""
    return [(k, v) for k, v in headers if k != b"content-type"] + [
        (b"content-type", b"application/json")
    ]


def _raised_at(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
