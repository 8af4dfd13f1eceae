"""The online deployment of each model, and the promote / rollback jobs that move aliases and
traffic together."""

import dagster as dg

from mlops_assets.defs.keys import deployment_key, promotion_key, rollout_job_name
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.resources import DeployerResource, ModelRegistryResource

SERVES_CHAMPION_CHECK = "endpoint_serves_the_registry_champion"


def _metadata(result: dict) -> dict:
    spec = result.get("spec") or {}
    split = result.get("split") or {}
    if spec and not split:
        from mlops_assets.serving.deployment import DeploymentSpec

        split = DeploymentSpec.model_validate(spec).split()
    metadata = {
        "traffic_split": ", ".join(f"v{v}: {share}%" for v, share in split.items()),
        "champion_version": spec.get("champion_version") or result.get("champion"),
        "challenger_version": spec.get("challenger_version") or "",
        "canary_percent": int(spec.get("canary_percent", 0)),
    }
    if "endpoint" in result:
        metadata["endpoint"] = dg.MetadataValue.url(result["endpoint"])
        metadata["pid"] = result["pid"]
    if "inference_service" in result:
        metadata["inference_service"] = result["inference_service"]
    return {k: v for k, v in metadata.items() if v is not None}


def build_deployment(model: ModelConfig) -> dg.AssetsDefinition:
    key = deployment_key(model)

    @dg.asset(
        key=key,
        deps=[promotion_key(model)],
        group_name="deployment",
        kinds={"kserve"},
        check_specs=[dg.AssetCheckSpec(SERVES_CHAMPION_CHECK, asset=key, blocking=True)],
        description=(
            f"The {model.name} predictor serving the registry's champion, with the challenger as "
            f"a {model.serving.canary_percent}% canary when there is one: the local KServe model "
            "server, or an InferenceService in prod. A version that fails its readiness check is "
            "not deployed; the old one keeps serving."
        ),
    )
    def deployment(
        context: dg.AssetExecutionContext,
        model_registry: ModelRegistryResource,
        deployer: DeployerResource,
    ):
        from mlops_assets.serving.deployment import DeploymentError
        from mlops_assets.serving.rollout import RolloutError, deploy
        from mlops_assets.training.registry import CHAMPION, alias_version, client

        registry = model_registry.registry()
        actor = f"dagster:{context.run_id}"
        try:
            result = deploy(registry, deployer, model, actor=actor, reason="deployment asset")
        except (DeploymentError, RolloutError) as err:
            raise dg.Failure(description=str(err)) from None
        metadata = _metadata(result)
        context.log.info(f"{model.name}: {metadata['traffic_split']}")
        yield dg.MaterializeResult(metadata=metadata)
        champion = alias_version(client(registry), model.registered_model, CHAMPION)
        yield dg.AssetCheckResult(
            check_name=SERVES_CHAMPION_CHECK,
            passed=metadata["champion_version"] == champion,
            metadata={"serving": metadata["champion_version"], "registry_champion": champion or ""},
        )

    return deployment


class RolloutConfig(dg.Config):
    reason: str = "requested from Dagster"


def rollout_job(model: ModelConfig, action: str) -> dg.JobDefinition:
    @dg.op(name=f"{action}_{model.name}_op", tags={"kind": "kserve"})
    def rollout_op(
        context: dg.OpExecutionContext,
        config: RolloutConfig,
        model_registry: ModelRegistryResource,
        deployer: DeployerResource,
    ):
        from mlops_assets.serving import rollout
        from mlops_assets.serving.deployment import DeploymentError

        operation = rollout.promote if action == "promote" else rollout.rollback
        actor = f"dagster:{context.run_id}"
        try:
            result = operation(
                model_registry.registry(), deployer, model, actor=actor, reason=config.reason
            )
        except (DeploymentError, rollout.RolloutError) as err:
            raise dg.Failure(description=str(err)) from None
        # Record the traffic move on the deployment asset, so its history shows every change.
        context.log_event(
            dg.AssetMaterialization(
                asset_key=deployment_key(model),
                description=f"{action}: {config.reason}",
                metadata={**_metadata(result), "action": action},
            )
        )
        return result

    @dg.job(
        name=rollout_job_name(action, model),
        description=(
            f"{action.capitalize()} {model.name}: registry aliases and traffic move together, "
            "recorded in the decision log."
        ),
        tags={"mlops/model": model.name, "mlops/action": action},
    )
    def job():
        rollout_op()

    return job


@dg.definitions
def deployments() -> dg.Definitions:
    from mlops_assets.defs.serving.sensors import canary_sensor

    assets, jobs, sensors = [], [], []
    for model in model_configs().values():
        rollouts = [rollout_job(model, action) for action in ("promote", "rollback")]
        assets.append(build_deployment(model))
        jobs += rollouts
        sensors.append(canary_sensor(model, rollouts))
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors)
