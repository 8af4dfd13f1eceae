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
import signal
import sys
from typing import Any

from mlops_assets.models.config import ModelConfig
from mlops_assets.settings import Settings

log = logging.getLogger("mlops.serving")


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` gets 413 before anything parses it."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen = 0
        replay: list[dict] = []
        # Chunked bodies have no length up front: read up to the limit before passing it on.
        if declared is None and scope.get("method") in ("POST", "PUT"):
            while True:
                message = await receive()
                replay.append(message)
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    return await self._reject(send)
                if not message.get("more_body"):
                    break

            async def replayed() -> dict:
                return replay.pop(0) if replay else await receive()

            return await self.app(scope, replayed, send)
        return await self.app(scope, receive, send)

    async def _reject(self, send: Any) -> None:
        from mlops_assets.serving.predictor import ERRORS

        ERRORS.labels("*", "payload_too_large").inc()
        body = json.dumps(
            {"error": f"request body over the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _rest_server_class() -> type:
    """KServe's REST server, logging a client's mistake as one line instead of a traceback."""
    from fastapi.responses import JSONResponse
    from kserve.errors import InvalidInput
    from kserve.protocol.rest.server import RESTServer

    async def invalid_input(_: Any, exc: InvalidInput) -> JSONResponse:
        log.info("400: %s", exc.reason)
        return JSONResponse(status_code=400, content={"error": exc.reason})

    class QuietRESTServer(RESTServer):
        def _add_exception_handlers(self, app: Any) -> None:
            super()._add_exception_handlers(app)
            app.add_exception_handler(InvalidInput, invalid_input)

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

    from mlops_assets.models.config import model_configs
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
        rest = _rest_server_class()(
            FASTAPI_APP_IMPORT_STRING,
            DataPlane(model_registry=repository),
            ModelRepositoryExtension(model_registry=repository),
            port,
            grace_period=10,
        )
        rest.config.host = host  # KServe binds 0.0.0.0; locally we stay on loopback
        # Per-request access and timing lines cost more than a prediction; /metrics has the numbers.
        rest.config.access_log = False
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        app.add_middleware(BodyLimit, max_bytes=config.serving.max_body_bytes)
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
