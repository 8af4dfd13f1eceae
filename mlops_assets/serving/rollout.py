"""Deploy, canary, promote and roll back: one operation each, moving registry aliases and traffic
together and recording every move in the decision log.

- deploy: serve the registry's champion, plus the challenger at the configured share if one exists.
- promote: the challenger becomes champion and takes all traffic; the old champion is kept as
  `previous_champion` for a rollback.
- rollback: during a canary, drop the challenger (all traffic back to the champion); otherwise
  restore `previous_champion`.

Traffic moves first (a deployment that fails readiness changes nothing), then the aliases.
"""

from __future__ import annotations

from typing import Any, Protocol

from mlops_assets.model_config import ModelConfig
from mlops_assets.serving.deployment import (
    DeploymentSpec,
    active_spec,
    resolve_pending,
    set_pending,
)
from mlops_assets.training.decisions import record, set_alias
from mlops_assets.training.registry import CHALLENGER, CHAMPION, Registry, alias_version, client

PREVIOUS_CHAMPION = "previous_champion"


class RolloutError(RuntimeError):
    """Nothing to promote or roll back, or the registry has no champion."""


class Deployer(Protocol):
    """What rollouts need of a deployer (mlops_assets.resources: the local model server, or a
    KServe InferenceService)."""

    def apply(self, config: ModelConfig, spec: DeploymentSpec) -> dict[str, Any]: ...

    def state(self, model: str) -> dict[str, Any] | None: ...


def desired_spec(
    registry: Registry, config: ModelConfig, actor: str, reason: str
) -> DeploymentSpec:
    mlflow_client = client(registry)
    name = config.registered_model
    champion = alias_version(mlflow_client, name, CHAMPION)
    if champion is None:
        raise RolloutError(f"model {name} has no champion to deploy; train one first")
    challenger = alias_version(mlflow_client, name, CHALLENGER)
    if challenger == champion:
        challenger = None
    return DeploymentSpec(
        model=config.name,
        champion_version=champion,
        challenger_version=challenger,
        canary_percent=config.serving.canary_percent if challenger else 0,
        actor=actor,
        reason=reason,
    )


def apply_spec(
    registry: Registry, deployer: Deployer, config: ModelConfig, spec: DeploymentSpec
) -> dict[str, Any]:
    """Put `spec` in front of traffic: pending until the deployer says it is ready, then active
    (the deployments table is the one record of what serves); a spec that fails is dropped."""
    set_pending(registry, spec)
    try:
        where = deployer.apply(config, spec)
    except BaseException:
        resolve_pending(registry, config.name, ready=False)
        raise
    resolve_pending(registry, config.name, ready=True)
    record(
        registry,
        config.registered_model,
        spec.challenger_version or spec.champion_version,
        "deployment",
        "serving",
        spec.actor,
        spec.reason,
        {"split": spec.split()},
    )
    return where


def current_spec(registry: Registry, config: ModelConfig) -> DeploymentSpec | None:
    """The deployment that serves now (the last one that became ready)."""
    return active_spec(registry, config.name)


def deploy(
    registry: Registry, deployer: Deployer, config: ModelConfig, actor: str, reason: str = "deploy"
) -> dict[str, Any]:
    spec = desired_spec(registry, config, actor, reason)
    where = apply_spec(registry, deployer, config, spec)
    return {"spec": spec.model_dump(mode="json"), **where}


def set_canary(
    registry: Registry,
    deployer: Deployer,
    config: ModelConfig,
    percent: int,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    """Change the share of customers the running canary's challenger gets (0..100); the
    versions stay as they are, the registry's aliases do not move."""
    spec = current_spec(registry, config)
    if spec is None or not spec.challenger_version:
        raise RolloutError(f"model {config.name} has no canary running to change")
    changes = {"canary_percent": percent, "actor": actor, "reason": reason}
    new = DeploymentSpec.model_validate({**spec.model_dump(exclude={"updated_at"}), **changes})
    where = apply_spec(registry, deployer, config, new)
    return {"spec": new.model_dump(mode="json"), **where}


def _arms(registry: Registry, config: ModelConfig) -> tuple[Any, str, str | None, str | None]:
    """The MLflow client, the registered model's name, its champion and challenger versions."""
    mlflow_client = client(registry)
    name = config.registered_model
    champion = alias_version(mlflow_client, name, CHAMPION)
    return mlflow_client, name, champion, alias_version(mlflow_client, name, CHALLENGER)


def promote(
    registry: Registry, deployer: Deployer, config: ModelConfig, actor: str, reason: str
) -> dict[str, Any]:
    mlflow_client, name, champion, challenger = _arms(registry, config)
    if challenger is None or challenger == champion:
        raise RolloutError(f"model {name} has no challenger to promote (champion is v{champion})")
    spec = DeploymentSpec(
        model=config.name, champion_version=challenger, actor=actor, reason=reason
    )
    where = apply_spec(registry, deployer, config, spec)
    if champion is not None:
        set_alias(registry, name, PREVIOUS_CHAMPION, champion, actor, f"replaced by v{challenger}")
    set_alias(registry, name, CHAMPION, challenger, actor, reason)
    mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    record(registry, name, challenger, "rollout", "promoted", actor, reason, {"previous": champion})
    return {"champion": challenger, "previous_champion": champion, "split": spec.split(), **where}


def rollback(
    registry: Registry, deployer: Deployer, config: ModelConfig, actor: str, reason: str
) -> dict[str, Any]:
    mlflow_client, name, champion, challenger = _arms(registry, config)
    if champion is None:
        raise RolloutError(f"model {name} has no champion")
    if challenger is not None and challenger != champion:
        # A canary is running (or staged): drop the challenger.
        spec = DeploymentSpec(
            model=config.name, champion_version=champion, actor=actor, reason=reason
        )
        where = apply_spec(registry, deployer, config, spec)
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
        record(
            registry,
            name,
            challenger,
            "rollout",
            "rolled_back",
            actor,
            reason,
            {"champion": champion},
        )
        return {"champion": champion, "rolled_back": challenger, "split": spec.split(), **where}
    previous = alias_version(mlflow_client, name, PREVIOUS_CHAMPION)
    if previous is None or previous == champion:
        raise RolloutError(f"model {name}: no canary running and no previous champion to restore")
    spec = DeploymentSpec(model=config.name, champion_version=previous, actor=actor, reason=reason)
    where = apply_spec(registry, deployer, config, spec)
    set_alias(registry, name, CHAMPION, previous, actor, reason)
    mlflow_client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    record(
        registry, name, champion, "rollout", "rolled_back", actor, reason, {"restored": previous}
    )
    return {"champion": previous, "rolled_back": champion, "split": spec.split(), **where}


def status(registry: Registry, deployer: Deployer, config: ModelConfig) -> dict[str, Any]:
    """What the registry says, what serves at what split, and where."""
    mlflow_client = client(registry)
    name = config.registered_model
    spec = current_spec(registry, config)
    return {
        "aliases": {
            alias: alias_version(mlflow_client, name, alias)
            for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)
        },
        "deployment": spec.model_dump(mode="json") if spec else None,
        "split": spec.split() if spec else {},
        "server": deployer.state(config.name),
    }
