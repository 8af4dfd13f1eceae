"""KServe's REST server with the project's exception handlers: a client's mistake is a 4xx with
{"error": ...}, one log line and a count by reason, never a 5xx or a traceback. An online feature
store that cannot be reached is a 503 `feature_store_unavailable` with a Retry-After (the server
stays up and answers again once the store is back)."""

from __future__ import annotations

import json
import logging
from typing import Any

from mlops_assets.features.online import FeatureStoreUnavailable

log = logging.getLogger("mlops.serving")
# What a 503 for an unreachable feature store tells clients to wait before retrying.
STORE_RETRY_AFTER_SECONDS = 2


def _validation_message(errors: list[dict]) -> tuple[str, str]:
    """FastAPI's RequestValidationError as (reason, one readable sentence)."""
    # The V2 body is declared `InferenceRequest | bytes`: the bytes alternative's complaint is noise.
    useful = [e for e in errors if tuple(e.get("loc", ()))[1:2] != ("bytes",)] or list(errors)
    if any(e.get("type") == "json_invalid" for e in useful):
        return "invalid_json", "the body is not valid JSON"
    parts = []
    for error in useful[:3]:
        loc = [p for p in error.get("loc", ()) if p not in ("body", "InferenceRequest")]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if error.get("type") == "missing":
            parts.append(f"missing field {where!r}")
        else:
            parts.append(f"{where or 'the body'}: {error.get('msg', 'invalid')}")
    return "invalid_input", "; ".join(parts) or "invalid request"


class Handlers:
    """The exception handlers, for a server that serves `models` (other names count as "*")."""

    def __init__(self, models: frozenset[str]):
        self.models = models

    def model_label(self, request: Any) -> str:
        name = request.path_params.get("model_name")
        return name if name in self.models else "*"

    def reject(
        self,
        request: Any,
        status: int,
        reason: str,
        message: str,
        headers: Any = None,
        level: int = logging.INFO,
    ):
        from fastapi.responses import JSONResponse

        from mlops_assets.serving.metrics import ERRORS

        ERRORS.labels(self.model_label(request), reason).inc()
        log.log(level, "%d %s: %s", status, reason, message)
        return JSONResponse(
            status_code=status, content={"error": message, "reason": reason}, headers=headers
        )

    def fault(self, request: Any, status: int, message: str, exc: BaseException, count=True):
        """A server fault: logged with its traceback, counted, answered without internals."""
        from fastapi.responses import JSONResponse

        from mlops_assets.serving.metrics import ERRORS

        log.error("%d on %s", status, request.url.path, exc_info=exc)
        if count:
            ERRORS.labels(self.model_label(request), "internal_error").inc()
        return JSONResponse(status_code=status, content={"error": message})

    async def invalid_input(self, request: Any, exc: Any):
        status, code = getattr(exc, "status", 400), getattr(exc, "code", "invalid_input")
        return self.reject(request, status, code, str(exc.reason))

    async def validation_error(self, request: Any, exc: Any):
        reason, message = _validation_message(list(exc.errors()))
        return self.reject(request, 400, reason, message)

    async def http_error(self, request: Any, exc: Any):
        from fastapi.responses import JSONResponse

        if exc.status_code >= 500:
            log.error("%d on %s: %s", exc.status_code, request.url.path, exc.detail)
            return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)})
        reason = {400: "invalid_json", 404: "unknown_route", 405: "unknown_route"}.get(
            exc.status_code, "invalid_input"
        )
        # 405 keeps its Allow header
        return self.reject(request, exc.status_code, reason, str(exc.detail), exc.headers)

    async def model_not_found(self, request: Any, exc: Any):
        name = request.path_params.get("model_name")
        if name in self.models:  # configured here, but no deployment of it is loaded
            message = (
                f"model {name!r} is not loaded on this server: it has no deployment yet, or its "
                f"last one failed its readiness check (`mlops deploy {name}`)"
            )
            return self.reject(request, 404, "model_not_loaded", message)
        served = f"; this server serves {sorted(self.models)}" if self.models else ""
        return self.reject(request, 404, "unknown_model", f"{exc}{served}")

    async def store_unavailable(self, request: Any, exc: FeatureStoreUnavailable):
        """The online store is down or restarting: not the client's fault, nor a bug here."""
        headers = {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
        return self.reject(
            request, 503, "feature_store_unavailable", str(exc), headers, logging.WARNING
        )

    async def json_error(self, request: Any, exc: json.JSONDecodeError):
        from mlops_assets.serving.requests import REQUEST

        state = REQUEST.get()
        if state is not None and not state.accepted:  # the client's body (orjson's is a subclass)
            return self.reject(request, 400, "invalid_json", f"the body is not valid JSON: {exc}")
        return self.fault(request, 500, "internal server error (JSONDecodeError)", exc)

    async def not_implemented(self, request: Any, exc: NotImplementedError):
        from mlops_assets.serving.requests import REQUEST

        state = REQUEST.get()
        if state is not None and not state.accepted:  # e.g. a model version in the path
            return self.reject(request, 400, "invalid_input", f"not supported: {exc}")
        return self.fault(request, 501, str(exc), exc, count=False)


def rest_server_class(models: frozenset[str] = frozenset()) -> type:
    """KServe's REST server: a client's mistake is a 4xx with {"error": ...}, one log line and a
    count by reason, never a 5xx or a traceback."""
    from fastapi.exceptions import RequestValidationError
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.protocol.rest.server import RESTServer
    from starlette.exceptions import HTTPException

    handlers = Handlers(models)

    class QuietRESTServer(RESTServer):
        def _add_exception_handlers(self, app: Any) -> None:
            super()._add_exception_handlers(app)
            app.add_exception_handler(InvalidInput, handlers.invalid_input)
            app.add_exception_handler(RequestValidationError, handlers.validation_error)
            app.add_exception_handler(json.JSONDecodeError, handlers.json_error)
            app.add_exception_handler(HTTPException, handlers.http_error)
            app.add_exception_handler(ModelNotFound, handlers.model_not_found)
            app.add_exception_handler(NotImplementedError, handlers.not_implemented)
            app.add_exception_handler(FeatureStoreUnavailable, handlers.store_unavailable)

    return QuietRESTServer
