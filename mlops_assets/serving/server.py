"""The model server process: KServe's REST server (V1, V2, health, readiness, /metrics, the model
repository extension) with the project's predictor, bound to 127.0.0.1 locally.

    python -m mlops_assets.serving.server --model churn --port 8085       # serves the deployment spec
    mlops serve churn --version 7 --host 0.0.0.0 --port 8080               # prod: one pinned version

`POST /v2/repository/models/<model>/load` makes a running server load the current spec (how a local
deployment swaps versions); the swap happens only if the new versions pass their readiness check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
from typing import Any

from mlops_assets.model_config import ModelConfig
from mlops_assets.settings import Settings

log = logging.getLogger("mlops.serving")


_V1_INFER = re.compile(r"/v1/models/(?P<model>[^/]+):(?:predict|explain)")
_V2_INFER = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/[^/]+)?/infer")
_V2_VERSIONS = re.compile(r"/v2/models/(?P<model>[^/]+)/versions/.*")
_REPOSITORY = re.compile(r"/v2/repository/models/(?P<model>[^/]+)/(?:load|unload)")
_MODEL_IN_PATH = re.compile(r"/v[12]/models/(?P<model>[^/:]+)")
_V1_FIELDS = frozenset({"instances"})
_V2_FIELDS = frozenset({"id", "parameters", "inputs", "outputs"})
_V2_INPUT_FIELDS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_V2_OUTPUT_FIELDS = frozenset({"name", "parameters"})
_V2_REQUIRED_INPUT_FIELDS = ("name", "shape", "datatype", "data")


class Rejection(Exception):
    """A request the guard answers itself (status, reason label, message)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class RequestGuard:
    """ASGI middleware in front of KServe's routes. Per request it costs one body read, one orjson
    parse and a walk over the envelope (microseconds; the data arrays are left to the predictor):

    - a body over `max_bytes`: 413, before anything parses it;
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

    def __init__(self, app: Any, max_bytes: int, models: frozenset[str] = frozenset()):
        from mlops_assets.serving.predictor import ERRORS, REQUEST, RequestState

        self.app = app
        self.max_bytes = max_bytes
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
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        repository = _REPOSITORY.fullmatch(path)
        if method == "POST" and repository and repository["model"] not in self.models:
            raise Rejection(
                404,
                "unknown_model",
                f"this server serves {sorted(self.models)}, not {repository['model']!r}",
            )
        if infer:
            _check_content_type(headers)
            body = await self._read_body(receive)
            if body is None:
                return None, receive
            payload = parse_json(body)
            if _V1_INFER.fullmatch(path):
                check_v1_envelope(payload)
            else:
                check_v2_envelope(payload)
            scope = {**scope, "headers": _as_json(headers)}
            return scope, _replay(body, receive)
        # Chunked bodies have no length up front: read up to the limit before passing it on.
        if declared is None and method in ("POST", "PUT"):
            body = await self._read_body(receive)
            if body is None:
                return None, receive
            return scope, _replay(body, receive)
        return scope, receive

    async def _read_body(self, receive: Any) -> bytes | None:
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _too_large(self) -> Rejection:
        return Rejection(
            413,
            "payload_too_large",
            f"request body over the limit of {self.max_bytes} bytes",
        )

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


def _replay(body: bytes, receive: Any) -> Any:
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


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259): no NaN/Infinity, UTF-8 only, numbers that fit a double."""
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise Rejection(400, "invalid_json", _why_not_json(body, err)) from None


class _Constant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


def _why_not_json(body: bytes, err: Exception) -> str:
    """A readable reason, on the error path only (never on the hot path)."""
    if not body.strip():
        return "the body is empty: send a JSON object"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"the body is not valid UTF-8 (byte {bad.start}); JSON must be UTF-8"
    try:
        json.loads(text, parse_constant=_reject_constant)
    except _Constant as constant:
        return (
            f"{constant} is not valid JSON (JSON has no NaN or Infinity): send a number, or "
            "null where a field is optional"
        )
    except (ValueError, RecursionError):
        pass
    return f"the body is not valid JSON: {err}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    from mlops_assets.serving.predictor import short

    return short(value)


def _kind(value: Any) -> str:
    from mlops_assets.serving.predictor import kind_of

    return kind_of(value)


def _check_fields(obj: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejection(
            400,
            "invalid_input",
            f"{where} has unknown fields [{shown}]; allowed: {sorted(allowed)}",
        )


def _check_parameters(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise Rejection(400, "invalid_input", f"{where} must be an object, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(item, str | int | float):  # bool is an int
            raise Rejection(
                400,
                "invalid_input",
                f"{where}[{key[:40]!r}] must be a string, number or boolean, got {_kind(item)}",
            )


def check_v1_envelope(payload: Any) -> None:
    """A V1 body is an object with exactly `instances` (the predictor checks the instances)."""
    if not isinstance(payload, dict):
        raise Rejection(
            400,
            "invalid_input",
            f'the body must be a JSON object like {{"instances": [...]}}, got {_kind(payload)}',
        )
    _check_fields(payload, _V1_FIELDS, "the body")


def check_v2_envelope(payload: Any) -> None:
    """The Open Inference Protocol request envelope with strict JSON types (KServe's pydantic
    models would coerce "3" to 3, or answer 422); the tensors' contents are the predictor's."""
    if not isinstance(payload, dict):
        raise Rejection(
            400,
            "invalid_input",
            f'the body must be a JSON object like {{"inputs": [...]}}, got {_kind(payload)}',
        )
    _check_fields(payload, _V2_FIELDS, "the body")
    if payload.get("id") is not None and not isinstance(payload["id"], str):
        raise Rejection(400, "invalid_input", f"'id' must be a string, got {_kind(payload['id'])}")
    _check_parameters(payload.get("parameters"), "'parameters'")
    if "inputs" not in payload:
        raise Rejection(
            400,
            "invalid_input",
            'missing field \'inputs\': expected [{"name": "customer_id", "datatype": "INT64", '
            '"shape": [n], "data": [...]}]',
        )
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise Rejection(400, "invalid_input", f"'inputs' must be a list, got {_kind(inputs)}")
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise Rejection(400, "invalid_input", f"{where} must be an object, got {_kind(tensor)}")
        _check_fields(tensor, _V2_INPUT_FIELDS, where)
        for field in _V2_REQUIRED_INPUT_FIELDS:
            if tensor.get(field) is None:
                state = "null" if field in tensor else "missing"
                raise Rejection(400, "invalid_input", f"{where}.{field} is {state}")
        for field in ("name", "datatype"):
            if not isinstance(tensor[field], str):
                raise Rejection(
                    400,
                    "invalid_input",
                    f"{where}.{field} must be a string, got {_kind(tensor[field])}",
                )
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
            raise Rejection(
                400,
                "invalid_input",
                f"{where}.shape must be a list of integers like [n], got {_short(shape)}",
            )
        if not isinstance(tensor["data"], list):
            raise Rejection(
                400,
                "invalid_input",
                f"{where}.data must be a list of values, got {_kind(tensor['data'])}",
            )
        _check_parameters(tensor.get("parameters"), f"{where}.parameters")
    outputs = payload.get("outputs")
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise Rejection(400, "invalid_input", f"'outputs' must be a list, got {_kind(outputs)}")
    for i, output in enumerate(outputs):
        where = f"outputs[{i}]"
        if not isinstance(output, dict):
            raise Rejection(400, "invalid_input", f"{where} must be an object, got {_kind(output)}")
        _check_fields(output, _V2_OUTPUT_FIELDS, where)
        if not isinstance(output.get("name"), str):
            raise Rejection(
                400,
                "invalid_input",
                f"{where}.name must be a string, got {_kind(output.get('name'))}",
            )
        _check_parameters(output.get("parameters"), f"{where}.parameters")


def _raised_at(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


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


def _rest_server_class(models: frozenset[str] = frozenset()) -> type:
    """KServe's REST server: a client's mistake is a 4xx with {"error": ...}, one log line and a
    count by reason, never a 5xx or a traceback."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.protocol.rest.server import RESTServer
    from starlette.exceptions import HTTPException

    from mlops_assets.serving.predictor import ERRORS, REQUEST

    def model_label(request: Any) -> str:
        name = request.path_params.get("model_name")
        return name if name in models else "*"

    def reject(
        request: Any, status: int, reason: str, message: str, headers: Any = None
    ) -> JSONResponse:
        ERRORS.labels(model_label(request), reason).inc()
        log.info("%d %s: %s", status, reason, message)
        return JSONResponse(
            status_code=status, content={"error": message, "reason": reason}, headers=headers
        )

    async def invalid_input(request: Any, exc: InvalidInput) -> JSONResponse:
        return reject(
            request,
            getattr(exc, "status", 400),
            getattr(exc, "code", "invalid_input"),
            str(exc.reason),
        )

    async def validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
        reason, message = _validation_message(list(exc.errors()))
        return reject(request, 400, reason, message)

    async def http_error(request: Any, exc: HTTPException) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%d on %s: %s", exc.status_code, request.url.path, exc.detail)
            return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)})
        reason = {400: "invalid_json", 404: "unknown_route", 405: "unknown_route"}.get(
            exc.status_code, "invalid_input"
        )
        # 405 keeps its Allow header
        return reject(request, exc.status_code, reason, str(exc.detail), exc.headers)

    async def model_not_found(request: Any, exc: ModelNotFound) -> JSONResponse:
        return reject(request, 404, "unknown_model", str(exc))

    async def json_error(request: Any, exc: json.JSONDecodeError) -> JSONResponse:
        state = REQUEST.get()
        if state is not None and not state.accepted:  # the client's body (orjson's is a subclass)
            return reject(request, 400, "invalid_json", f"the body is not valid JSON: {exc}")
        log.error("500 on %s", request.url.path, exc_info=exc)
        ERRORS.labels(model_label(request), "internal_error").inc()
        return JSONResponse(
            status_code=500, content={"error": "internal server error (JSONDecodeError)"}
        )

    async def not_implemented(request: Any, exc: NotImplementedError) -> JSONResponse:
        state = REQUEST.get()
        if state is not None and not state.accepted:  # e.g. a model version in the path
            return reject(request, 400, "invalid_input", f"not supported: {exc}")
        log.error("501 on %s", request.url.path, exc_info=exc)
        return JSONResponse(status_code=501, content={"error": str(exc)})

    class QuietRESTServer(RESTServer):
        def _add_exception_handlers(self, app: Any) -> None:
            super()._add_exception_handlers(app)
            app.add_exception_handler(InvalidInput, invalid_input)
            app.add_exception_handler(RequestValidationError, validation_error)
            app.add_exception_handler(json.JSONDecodeError, json_error)
            app.add_exception_handler(HTTPException, http_error)
            app.add_exception_handler(ModelNotFound, model_not_found)
            app.add_exception_handler(NotImplementedError, not_implemented)

    return QuietRESTServer


def build_repository(
    settings: Settings, config: ModelConfig, pinned_version: str | None, inference_log: Any
) -> Any:
    from kserve.model_repository import ModelRepository

    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.features.store import feature_store
    from mlops_assets.serving.deployment import DeploymentError, DeploymentSpec, spec_to_serve
    from mlops_assets.serving.predictor import ChurnPredictor

    reader = OnlineFeatureReader(feature_store(settings), config.feature_service)

    def current_spec() -> DeploymentSpec:
        if pinned_version:
            return DeploymentSpec(
                model=config.name, champion_version=pinned_version, actor="pinned"
            )
        spec = spec_to_serve(settings, config.name)
        if spec is None:
            raise DeploymentError(
                f"no deployment spec for {config.name}; run `mlops deploy {config.name}`"
            )
        return spec

    class ServingRepository(ModelRepository):
        def load_model(self, name: str) -> bool:
            predictor = ChurnPredictor(config, settings, current_spec(), reader, inference_log)
            predictor.load()  # NotReady propagates: the caller keeps what it had
            self.update(predictor)
            log.info("serving %s: %s", name, predictor.spec.split())
            return True

        async def load(self, name: str) -> bool:
            if name != config.name:
                raise KeyError(f"this server serves {config.name!r}, not {name!r}")
            return await asyncio.to_thread(self.load_model, name)

    return ServingRepository()


def serve(model: str, host: str, port: int, pinned_version: str | None = None) -> int:
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    from mlops_assets.model_config import model_configs
    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.serving.inference_log import InferenceLog
    from mlops_assets.serving.predictor import NotReady
    from mlops_assets.settings import get_settings

    settings = get_settings()
    config = model_configs()[model]
    inference_log = InferenceLog(
        settings, config.name, config.serving.log_flush_rows, config.serving.log_flush_seconds
    )
    try:
        repository = build_repository(settings, config, pinned_version, inference_log)
        try:
            repository.load_model(config.name)
        except (NotReady, DeploymentError) as err:
            log.error("not starting: %s", err)
            return 3
        rest = _rest_server_class(frozenset({config.name}))(
            FASTAPI_APP_IMPORT_STRING,
            DataPlane(model_registry=repository),
            ModelRepositoryExtension(model_registry=repository),
            port,
            grace_period=10,
        )
        rest.config.host = host  # KServe binds 0.0.0.0; locally we stay on loopback
        # Per-request access and timing lines cost more than a prediction; /metrics has the numbers.
        rest.config.access_log = False
        # uvicorn decides per connection from `hasHandlers()`, not from the flag set above.
        access = logging.getLogger("uvicorn.access")
        access.handlers, access.propagate = [], False
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        app.add_middleware(
            RequestGuard,
            max_bytes=config.serving.max_body_bytes,
            models=frozenset({config.name}),
        )
        # uvicorn re-raises the stop signal after its graceful shutdown; with the default handler
        # that would kill the process before the inference log is flushed.
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: None)
        rest.run()  # returns after SIGTERM/SIGINT, once in-flight requests are done
    finally:
        code = inference_log.close()
        log.info("inference log flushed (writer exit code %s)", code)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", default=None, help="serve this registered version only")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported; ours are not for it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(args.model, args.host, args.port, args.version)


if __name__ == "__main__":
    sys.exit(main())
