"""The model server process: KServe's REST server (V1, V2, health, readiness, /metrics, the model
repository extension) with the project's predictor, bound to 127.0.0.1 locally.

    mlops serve churn --port 8085                                  # serves the deployment spec
    mlops serve churn --version 7 --host 0.0.0.0 --port 8080       # prod: one pinned version
    mlops serve churn --standby                                    # no model until a load request

The CLI opens the environment's resources and hands them in; `mlops deploy` starts the same
command in the background.

`POST /v2/repository/models/<model>/load` makes a running server load the current spec (how a local
deployment swaps versions); the swap happens only if the new versions pass their readiness check.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from mlops_assets.model_config import ModelConfig

log = logging.getLogger("mlops.serving")


def build_repository(
    resources: Any, config: ModelConfig, pinned_version: str | None, inference_log: Any
) -> Any:
    """KServe's model repository with this model's predictor; (re)loading it reads the spec to
    serve from the deployments table (or serves the pinned version)."""
    from kserve.model_repository import ModelRepository

    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.serving.deployment import DeploymentError, DeploymentSpec, spec_to_serve
    from mlops_assets.serving.predictor import Predictor

    registry = resources.model_registry.registry()
    reader = OnlineFeatureReader(resources.feature_store.store(), config.feature_service)

    def current_spec() -> DeploymentSpec:
        if pinned_version:
            return DeploymentSpec(
                model=config.name, champion_version=pinned_version, actor="pinned"
            )
        spec = spec_to_serve(registry, config.name)
        if spec is None:
            raise DeploymentError(
                f"no deployment spec for {config.name}; run `mlops deploy {config.name}`"
            )
        return spec

    class ServingRepository(ModelRepository):
        def load_model(self, name: str) -> bool:
            predictor = Predictor(config, registry, current_spec(), reader, inference_log)
            predictor.load()  # NotReady propagates: the caller keeps what it had
            self.update(predictor)
            log.info("serving %s: %s", name, predictor.spec.split())
            return True

        async def load(self, name: str) -> bool:
            if name != config.name:
                raise KeyError(f"this server serves {config.name!r}, not {name!r}")
            return await asyncio.to_thread(self.load_model, name)

    return ServingRepository()


def serve(
    resources: Any,
    data_dir: Path,
    config: ModelConfig,
    host: str,
    port: int,
    pinned_version: str | None = None,
    standby: bool = False,
) -> int:
    """Serve `config`'s model with the environment's `resources` until stopped; the exit code.
    In standby the server starts with no model (its model routes answer 404) and loads the spec
    on the first load request: a deployment then skips the server's start-up."""
    from mlops_assets.serving.inference_log import InferenceLog

    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported; ours are not for it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    inference_log = InferenceLog(
        resources.lakehouse.catalog().properties,
        data_dir / "serving" / config.name / "inference_log_spool",
        config.name,
        config.serving.log_flush_rows,
        config.serving.log_flush_seconds,
    )
    from feast.errors import FeatureServiceNotFoundException

    try:
        repository = build_repository(resources, config, pinned_version, inference_log)
        return _run(repository, config, host, port, standby)
    except FeatureServiceNotFoundException:
        log.error(
            "not starting: the feature store of %s has no feature service %r; build the lakehouse "
            "first (`mlops demo`, or materialize the feast assets in Dagster)",
            data_dir,
            config.feature_service,
        )
        return 3
    finally:
        code = inference_log.close()
        log.info("inference log flushed (writer exit code %s)", code)
        # Flushed and closed: the exit need not walk the heap (a deployer waits on it).
        gc.freeze()


def _run(repository: Any, config: ModelConfig, host: str, port: int, standby: bool) -> int:
    """Load the model (unless in standby), then serve until SIGTERM/SIGINT (in-flight requests
    finish first)."""
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.serving.guard import RequestGuard
    from mlops_assets.serving.handlers import rest_server_class
    from mlops_assets.serving.predictor import NotReady

    try:
        if standby:
            from mlops_assets.processes import import_in_background
            from mlops_assets.serving.predictor import LOAD_IMPORTS

            log.info("standby: %s is served after its first load request", config.name)
            import_in_background(*LOAD_IMPORTS, low_priority=True)
        else:
            repository.load_model(config.name)
    except (NotReady, DeploymentError) as err:
        log.error("not starting: %s", err)
        return 3
    models = frozenset({config.name})
    rest = rest_server_class(models)(
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
    app.add_middleware(RequestGuard, max_bytes=config.serving.max_body_bytes, models=models)
    # uvicorn re-raises the stop signal after its graceful shutdown; with the default handler that
    # would kill the process before the inference log is flushed.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    rest.run()
    return 0
