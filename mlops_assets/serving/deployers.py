"""The deployer resources: `DeployerResource` puts a deployment spec in front of traffic, through
the local KServe model server (`LocalDeployer`) or a KServe InferenceService
(`InferenceServiceDeployer`). `mlops_assets.resources.resources_for` picks one per environment."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from mlops_assets.model_config import ModelConfig
    from mlops_assets.serving.deployment import DeploymentSpec


class DeployerResource(dg.ConfigurableResource, ABC):
    """Puts a deployment spec (champion, optional canary) in front of traffic."""

    @abstractmethod
    def apply(self, config: ModelConfig, spec: DeploymentSpec) -> dict[str, Any]:
        """Serve `spec`; raises DeploymentError (and changes nothing) if it does not become ready."""

    @abstractmethod
    def stop(self, model: str) -> bool: ...

    def stop_all(self, models: list[str]) -> bool:
        """Stop serving every one of `models`; whether any was stopped."""
        return any([self.stop(model) for model in models])

    @abstractmethod
    def state(self, model: str) -> dict[str, Any] | None: ...

    def standby(self, config: ModelConfig) -> dict[str, Any] | None:
        """Start the serving runtime ahead of the first deployment, where that saves time; the
        platform keeps its own runtimes (KServe), so by default there is nothing to do."""
        return None


class LocalDeployer(DeployerResource):
    """One local KServe model server per data folder hosting every configured model: a
    deployment starts it or has it load that model; stopping a model unloads it while others
    are loaded (the last one stops the server)."""

    data_dir: str
    port: int | None = None  # MLOPS_SERVING_PORT; default: the model config's serving.port

    def apply(self, config, spec) -> dict[str, Any]:
        from mlops_assets.serving.local_server import deploy_local

        # The server reads the spec it loads from the deployments table, where it is pending.
        state = deploy_local(self.data_dir, self.port or config.serving.port, config)
        return {"endpoint": state["endpoint"], "pid": state["pid"]}

    def standby(self, config) -> dict[str, Any] | None:
        from mlops_assets.serving.local_server import start_standby

        return start_standby(self.data_dir, self.port or config.serving.port, config)

    def stop(self, model: str | None = None) -> bool:
        """Stop serving `model` (None: stop the whole server)."""
        from mlops_assets.serving.local_server import stop_server

        return stop_server(self.data_dir, model)

    def stop_all(self, models: list[str]) -> bool:
        return self.stop()

    def state(self, model: str) -> dict[str, Any] | None:
        from mlops_assets.serving.local_server import server_state

        return server_state(self.data_dir, model)


class InferenceServiceDeployer(DeployerResource):
    namespace: str = "mlops"
    image: str
    deployment_mode: str = "Serverless"  # KServe's; canaries need Serverless

    def apply(self, config, spec) -> dict[str, Any]:
        from mlops_assets.serving.inference_service import apply, render, validate

        manifest = render(config, spec, self.namespace, self.image, self.deployment_mode)
        validate(manifest)
        applied = apply(manifest)
        return {"inference_service": f"{self.namespace}/{config.name}", "applied": bool(applied)}

    def stop(self, model: str) -> bool:
        from mlops_assets.serving.inference_service import delete

        return delete(self.namespace, model)

    def state(self, model: str) -> dict[str, Any] | None:
        return None  # the cluster reports it (`kubectl get inferenceservice`)
