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

from typing import Any

from mlops_assets.model_config import ModelConfig
from mlops_assets.serving.deployment import DeploymentSpec, deploy_local
from mlops_assets.settings import Environment, Settings
from mlops_assets.training.promotion import record, set_alias
from mlops_assets.training.registry import CHALLENGER, CHAMPION, alias_version, client

PREVIOUS_CHAMPION = "previous_champion"


class RolloutError(RuntimeError):
    """Nothing to promote or roll back, or the registry has no champion."""


def desired_spec(
    settings: Settings, config: ModelConfig, actor: str, reason: str
) -> DeploymentSpec:
    mlflow_client = client(settings)
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


def apply_spec(settings: Settings, config: ModelConfig, spec: DeploymentSpec) -> dict[str, Any]:
    """Serve `spec`: the local model server, or an InferenceService in prod; then record it as
    the current deployment (the canary sensor and `mlops status` read it back)."""
    if settings.env is Environment.PROD:
        from mlops_assets.serving.inference_service import apply, render, validate

        manifest = render(config, spec)
        validate(manifest)
        applied = apply(manifest)
        where = {
            "inference_service": f"{config.serving.namespace}/{config.name}",
            "applied": bool(applied),
        }
    else:
        state = deploy_local(settings, config, spec)
        where = {"endpoint": state["endpoint"], "pid": state["pid"]}
    record(
        settings,
        config.registered_model,
        spec.challenger_version or spec.champion_version,
        "deployment",
        "serving",
        spec.actor,
        spec.reason,
        {"spec": spec.model_dump(mode="json"), "split": spec.split()},
    )
    return where


def current_spec(settings: Settings, config: ModelConfig) -> DeploymentSpec | None:
    """The last deployment that became ready (from the decision log, the same in both profiles)."""
    import json

    from mlops_assets.training.promotion import last_event

    event = last_event(settings, config.registered_model, "deployment")
    return DeploymentSpec.model_validate(json.loads(event["metrics"])["spec"]) if event else None


def deploy(
    settings: Settings, config: ModelConfig, actor: str, reason: str = "deploy"
) -> dict[str, Any]:
    spec = desired_spec(settings, config, actor, reason)
    where = apply_spec(settings, config, spec)
    return {"spec": spec.model_dump(mode="json"), **where}


def promote(settings: Settings, config: ModelConfig, actor: str, reason: str) -> dict[str, Any]:
    mlflow_client = client(settings)
    name = config.registered_model
    champion = alias_version(mlflow_client, name, CHAMPION)
    challenger = alias_version(mlflow_client, name, CHALLENGER)
    if challenger is None or challenger == champion:
        raise RolloutError(f"model {name} has no challenger to promote (champion is v{champion})")
    spec = DeploymentSpec(
        model=config.name, champion_version=challenger, actor=actor, reason=reason
    )
    where = apply_spec(settings, config, spec)
    if champion is not None:
        set_alias(settings, name, PREVIOUS_CHAMPION, champion, actor, f"replaced by v{challenger}")
    set_alias(settings, name, CHAMPION, challenger, actor, reason)
    mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    record(settings, name, challenger, "rollout", "promoted", actor, reason, {"previous": champion})
    return {"champion": challenger, "previous_champion": champion, "split": spec.split(), **where}


def rollback(settings: Settings, config: ModelConfig, actor: str, reason: str) -> dict[str, Any]:
    mlflow_client = client(settings)
    name = config.registered_model
    champion = alias_version(mlflow_client, name, CHAMPION)
    challenger = alias_version(mlflow_client, name, CHALLENGER)
    if champion is None:
        raise RolloutError(f"model {name} has no champion")
    if challenger is not None and challenger != champion:
        # A canary is running (or staged): drop the challenger.
        spec = DeploymentSpec(
            model=config.name, champion_version=champion, actor=actor, reason=reason
        )
        where = apply_spec(settings, config, spec)
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
        record(
            settings,
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
    where = apply_spec(settings, config, spec)
    set_alias(settings, name, CHAMPION, previous, actor, reason)
    mlflow_client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    record(
        settings, name, champion, "rollout", "rolled_back", actor, reason, {"restored": previous}
    )
    return {"champion": previous, "rolled_back": champion, "split": spec.split(), **where}


def status(settings: Settings, config: ModelConfig) -> dict[str, Any]:
    """What the registry says and what the local server serves."""
    from mlops_assets.serving.deployment import server_state

    mlflow_client = client(settings)
    name = config.registered_model
    spec = current_spec(settings, config)
    return {
        "aliases": {
            alias: alias_version(mlflow_client, name, alias)
            for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)
        },
        "deployment": spec.model_dump(mode="json") if spec else None,
        "split": spec.split() if spec else {},
        "server": server_state(settings, config.name),
    }
