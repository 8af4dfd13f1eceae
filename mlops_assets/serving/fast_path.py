"""The predict routes without FastAPI's per-request machinery: an ASGI app in front of KServe's
FastAPI app that answers `POST /v1/models/<m>:predict` and `POST /v2/models/<m>/infer` for the
models this server serves, and hands every other request (explain, metadata, health, /metrics,
the model repository, other models, query strings, ...) to KServe's app unchanged.

A request it takes goes through the same guard (`RequestGuard`: size, content type, strict JSON,
the V1/V2 envelope, 400/500 for an exception that escapes) and then the same steps as KServe's
own endpoint handlers (`V1Endpoints.predict`, `V2Endpoints.infer`): the data plane's readiness
check, decode, `Model.__call__` (KServe's latency histograms, the predictor, the inference log),
encode, and the same response class, so status, headers, body and metrics are those of the full
stack. An exception is answered by the handler the app registered for its class (the same
4xx/503 envelopes). What it skips is routing, dependency solving, the request/response objects,
header copies, jsonable_encoder and five middleware layers: about a third of a prediction's time
in the server.

A V2 body that KServe's pydantic model would not accept is handed to the full stack (which
answers it with its validation message), as is anything the fast path does not recognise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mlops_assets.serving.guard import RequestGuard, replay

_V1_PREDICT = re.compile(r"/v1/models/(?P<model>[^/]+):predict")
_V2_INFER = re.compile(r"/v2/models/(?P<model>[^/]+)/infer")


class _Delegate(Exception):
    """The fast path does not take this request: the full stack answers it."""


class FastPath:
    """ASGI app: the predict routes of `models` answered directly (see the module docstring), the
    rest by `app` (KServe's FastAPI app, guard included)."""

    def __init__(
        self,
        app: Any,
        dataplane: Any,
        max_bytes: int | Mapping[str, int],
        models: frozenset[str],
    ):
        self.app = app
        self.dataplane = dataplane
        self.models = models
        self._guarded = RequestGuard(self._infer, max_bytes=max_bytes, models=models)

    def _route(self, scope: dict) -> tuple[str, str] | None:
        """(protocol, model) when the fast path takes this request."""
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("query_string"):
            return None
        path = scope.get("path", "")
        for protocol, pattern in (("v1", _V1_PREDICT), ("v2", _V2_INFER)):
            match = pattern.fullmatch(path)
            if match and match["model"] in self.models:
                return protocol, match["model"]
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self._route(scope)
        if route is None:
            return await self.app(scope, receive, send)
        return await self._guarded({**scope, "mlops.route": route}, receive, send)

    async def _infer(self, scope: dict, receive: Any, send: Any) -> None:
        """Behind the guard: the body has been read and checked; answer as KServe's handler."""
        body = await _read_body(receive)
        protocol, model = scope["mlops.route"]
        scope = {**scope, "path_params": {"model_name": model}}
        try:
            if protocol == "v1":
                response = await self._v1(model, body, scope)
            else:
                response = await self._v2(model, body, scope)
        except _Delegate:
            return await self.app(scope, replay(body, receive), send)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise  # the guard answers it (400 before the predictor accepted, else 500)
            from starlette.requests import Request

            response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)
        return None

    async def _v1(self, model: str, body: bytes, scope: dict) -> Any:
        """`V1Endpoints.predict`, step for step."""
        from fastapi.responses import ORJSONResponse
        from kserve.errors import ModelNotReady

        dataplane = self.dataplane
        if not await dataplane.model_ready(model, True):
            raise ModelNotReady(model)
        headers = _headers(scope)
        infer_request, attributes = dataplane.decode(body=body, headers=headers)
        response, response_headers = await dataplane.infer(
            model_name=model, request=infer_request, headers=headers
        )
        response, encoded_headers = dataplane.encode(
            model_name=model, response=response, headers=headers, req_attributes=attributes
        )
        response_headers.update(encoded_headers)
        response_headers.pop("content-length", None)
        if isinstance(response, bytes | str):
            from starlette.responses import Response

            return Response(content=response, headers=response_headers)
        return ORJSONResponse(content=response, headers=response_headers)

    async def _v2(self, model: str, body: bytes, scope: dict) -> Any:
        """`V2Endpoints.infer` behind FastAPI's body parsing and response serialization."""
        from fastapi.responses import ORJSONResponse
        from kserve.constants.constants import PredictorProtocol
        from kserve.errors import ModelNotReady
        from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
        from pydantic import ValidationError

        try:  # as FastAPI parses and validates the body (stdlib json, then the pydantic model)
            request_body = InferenceRequest.model_validate(json.loads(body))
        except (ValueError, RecursionError, ValidationError):
            raise _Delegate from None  # the full stack answers with its validation message
        dataplane = self.dataplane
        if not await dataplane.model_ready(model, True):
            raise ModelNotReady(model)
        headers = _headers(scope)
        infer_request, _ = dataplane.decode(
            request_body,
            headers,
            protocol_version=PredictorProtocol.REST_V2.value,
            model_name=model,
        )
        response, response_headers = await dataplane.infer(
            model_name=model, request=infer_request, headers=headers
        )
        response, encoded_headers = dataplane.encode(
            model_name=model, response=response, headers=headers, req_attributes={}
        )
        response_headers.update(encoded_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if isinstance(response, bytes):
            raise TypeError("unexpected binary V2 response")
        # FastAPI's jsonable_encoder of a pydantic model is its JSON-mode dump.
        content = InferenceResponse.model_validate(response).model_dump(mode="json", by_alias=True)
        return ORJSONResponse(content=content, headers=response_headers or None)

    def _handler_for(self, exc: Exception) -> Any:
        """The exception handler the app registered for `exc`'s class (nearest in its MRO), as
        Starlette's ExceptionMiddleware picks it; None for the catch-all (Exception/500)."""
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in handlers:
                return handlers[cls]
        return None


def _headers(scope: dict) -> dict[str, str]:
    """The request headers as KServe's handlers see them: `dict(request.headers.items())`."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
