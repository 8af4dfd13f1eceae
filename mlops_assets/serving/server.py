"""The model server process: KServe's REST server (V1, V2, health, readiness, /metrics, the model
repository extension) hosting every configured model side by side, bound to 127.0.0.1 locally.

    mlops serve                                                    # every model with its spec
    mlops serve churn fraud                                        # these models only
    mlops serve churn --version 7 --host 0.0.0.0 --port 8080       # prod: one pinned version
    mlops serve --standby                                          # no model until a load request

The CLI opens the environment's resources and hands them in; `mlops deploy` starts the same
command in the background (one server per data folder, see local_server.py).

Each model has its own predictor, feature reader and inference log writer; /metrics has them all
under a `model` label. At start every model with a deployment spec is loaded; one without a spec
(or one that fails its readiness check) is not served and its routes answer 404 with the reason,
while the others serve. `POST /v2/repository/models/<model>/load` makes a running server load that
model's current spec (how a local deployment swaps versions) without touching the other models;
the swap happens only if the new versions pass their readiness check.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.model_config import ModelConfig

if TYPE_CHECKING:
    from mlops_assets.serving.deployment import DeploymentSpec

log = logging.getLogger("mlops.serving")


def build_repository(
    resources: Any,
    configs: Sequence[ModelConfig],
    pinned_version: str | None,
    inference_logs: Mapping[str, Any],
) -> Any:
    """KServe's model repository for `configs`; (re)loading one model reads the spec to serve
    from the deployments table (or serves the pinned version) and leaves the others alone."""
    from feast.errors import FeatureServiceNotFoundException
    from kserve.errors import ModelNotFound
    from kserve.model_repository import ModelRepository

    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.serving.predictor import NotReady, Predictor

    registry = resources.model_registry.registry()
    store = resources.feature_store.store()
    by_name = {c.name: c for c in configs}
    readers: dict[tuple[str, tuple[str, ...]], OnlineFeatureReader] = {}

    def reader_for(config: ModelConfig) -> OnlineFeatureReader:
        key = (config.feature_service, tuple(config.join_keys))
        if key not in readers:
            readers[key] = OnlineFeatureReader(store, config.feature_service, config.join_keys)
        return readers[key]

    _open_feature_readers(configs, reader_for)

    class ServingRepository(ModelRepository):
        def load_model(self, name: str) -> bool:
            config = by_name[name]
            try:
                reader = reader_for(config)
            except FeatureServiceNotFoundException as err:
                raise NotReady(f"{name}: {err}; build and apply its features first") from None
            spec = _spec_to_load(registry, config, pinned_version)
            predictor = Predictor(config, registry, spec, reader, inference_logs[name])
            predictor.load()  # NotReady propagates: the caller keeps what it had
            self.update(predictor)
            # What loading left on the heap (Feast, MLflow, sklearn, the model) lives as long as
            # the server: out of the collector's sight, a full collection during a request walks
            # only what requests allocate (tens of ms less at the tail).
            gc.freeze()
            log.info("serving %s: %s", name, predictor.spec.split())
            return True

        async def load(self, name: str) -> bool:
            if name not in by_name:
                raise ModelNotFound(name)
            return await asyncio.to_thread(self.load_model, name)

    return ServingRepository()


def _open_feature_readers(
    configs: Sequence[ModelConfig], reader_for: Callable[[ModelConfig], Any]
) -> None:
    """Open each model's feature reader ahead of its first load. A missing feature service stops
    a one-model server at start; beside other models, that model only is not served (its load
    says why)."""
    from feast.errors import FeatureServiceNotFoundException

    for config in configs:
        try:
            reader_for(config)
        except FeatureServiceNotFoundException as err:
            if len(configs) == 1:
                raise
            log.warning("%s cannot be served: %s", config.name, err)


def _spec_to_load(registry: Any, config: ModelConfig, pinned_version: str | None) -> DeploymentSpec:
    """The deployment spec a (re)load serves: the pinned version (prod pods), else the spec the
    deployments table holds for the model."""
    from mlops_assets.serving.deployment import DeploymentError, DeploymentSpec, spec_to_serve

    if pinned_version:
        return DeploymentSpec(model=config.name, champion_version=pinned_version, actor="pinned")
    spec = spec_to_serve(registry, config.name)
    if spec is None:
        raise DeploymentError(
            f"no deployment spec for {config.name}; run `mlops deploy {config.name}`"
        )
    return spec


def serve(
    resources: Any,
    data_dir: Path,
    configs: ModelConfig | Sequence[ModelConfig],
    host: str,
    port: int,
    pinned_version: str | None = None,
    standby: bool = False,
) -> int:
    """Serve the models of `configs` with the environment's `resources` until stopped; the exit
    code. In standby the server starts with no model (its model routes answer 404) and loads a
    model on its first load request: a deployment then skips the server's start-up."""
    from mlops_assets.serving.inference_log import InferenceLog

    configs = [configs] if isinstance(configs, ModelConfig) else list(configs)
    if pinned_version and len(configs) != 1:
        raise ValueError("a pinned version serves exactly one model")
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported; ours are not for it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    properties = resources.lakehouse.catalog().properties
    inference_logs = {
        c.name: InferenceLog(
            properties,
            data_dir / "serving" / c.name / "inference_log_spool",
            c.name,
            c.serving.log_flush_rows,
            c.serving.log_flush_seconds,
            c.join_keys,
        )
        for c in configs
    }
    from feast.errors import FeatureServiceNotFoundException

    try:
        repository = build_repository(resources, configs, pinned_version, inference_logs)
        return _run(repository, configs, host, port, standby)
    except FeatureServiceNotFoundException as err:
        missing = [c.feature_service for c in configs if c.feature_service in str(err)]
        log.error(
            "not starting: the feature store of %s has no feature service %r; build the "
            "lakehouse first (`mlops demo`, or materialize the feast assets in Dagster)",
            data_dir,
            missing[0] if missing else str(err),
        )
        return 3
    finally:
        for name, inference_log in inference_logs.items():
            code = inference_log.close()
            log.info("inference log of %s flushed (writer exit code %s)", name, code)
        # Flushed and closed: the exit need not walk the heap (a deployer waits on it).
        gc.freeze()


def _load_at_start(repository: Any, configs: Sequence[ModelConfig]) -> list[str]:
    """Load every model that has a spec; the names loaded. A model without one (or one whose
    versions fail their readiness check) is left out with a log line; the others serve."""
    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.serving.predictor import NotReady

    loaded = []
    for config in configs:
        try:
            repository.load_model(config.name)
            loaded.append(config.name)
        except (NotReady, DeploymentError) as err:
            log.warning("%s is not served: %s", config.name, err)
    return loaded


def _run(
    repository: Any, configs: Sequence[ModelConfig], host: str, port: int, standby: bool
) -> int:
    """Load the models (unless in standby), then serve until SIGTERM/SIGINT (in-flight requests
    finish first)."""
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    from mlops_assets.serving.fast_path import FastPath
    from mlops_assets.serving.guard import RequestGuard
    from mlops_assets.serving.handlers import rest_server_class

    names = [c.name for c in configs]
    if standby:
        from mlops_assets.processes import import_in_background
        from mlops_assets.serving.predictor import LOAD_IMPORTS

        log.info("standby: %s served after their first load request", names)
        import_in_background(*LOAD_IMPORTS, low_priority=True)
    elif len(configs) == 1:
        # One model named on the command line (a pinned prod pod): it must serve, or no start.
        from mlops_assets.serving.deployment import DeploymentError
        from mlops_assets.serving.predictor import NotReady

        try:
            repository.load_model(names[0])
        except (NotReady, DeploymentError) as err:
            log.error("not starting: %s", err)
            return 3
    else:
        log.info("serving %s of %s", _load_at_start(repository, configs) or "none", names)
    models = frozenset(names)
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
    limits = {c.name: c.serving.max_body_bytes for c in configs}
    app.add_middleware(RequestGuard, max_bytes=limits, models=models)
    # The predict routes skip FastAPI's per-request machinery (same answers, see fast_path.py).
    rest.config.app = FastPath(app, rest.dataplane, limits, models)
    # uvicorn re-raises the stop signal after its graceful shutdown; with the default handler that
    # would kill the process before the inference log is flushed.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    rest.run()
    return 0
