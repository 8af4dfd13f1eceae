"""/v1/models: a tenant's models, their versions with lineage, their features; promote, roll back
and archive (the same library calls as `mlops promote` / `mlops rollback`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.api.access import NAME_PATTERN
from mlops_assets.api.context import Context, allowed
from mlops_assets.api.errors import ApiError, not_found

router = APIRouter(prefix="/v1/models", tags=["models"])
Reader = allowed("models:read")
Writer = allowed("models:write")
FeatureReader = allowed("features:read")
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="A model config's name.")]
Version = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,8}$", description="An MLflow version.")]


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Recorded with the change.")


ReasonBody = Annotated[Reason, Body()]


def rollout_errors(err: Exception) -> ApiError:
    """The library's refusals as HTTP answers (nothing changed in each case)."""
    from mlops_assets.serving.deployment import DeploymentError
    from mlops_assets.training.versions import UnknownVersion

    if isinstance(err, DeploymentError):
        return ApiError(503, "not_ready", f"{err}; what served before still serves")
    if isinstance(err, UnknownVersion):
        return not_found(f"{err.model} version")
    return ApiError(409, "conflict", str(err))


def _describe(ctx: Context, config: Any) -> dict[str, Any]:
    from mlops_assets.training.registry import CHALLENGER, CHAMPION, alias_version, client

    mlflow_client = client(ctx.registry)
    aliases = {
        a: alias_version(mlflow_client, config.registered_model, a) for a in (CHAMPION, CHALLENGER)
    }
    return {
        "name": config.name,
        "registered_model": config.registered_model,
        "feature_service": config.feature_service,
        "aliases": aliases,
    }


@router.get("")
def list_models(principal: Reader, ctx: Context) -> list[dict[str, Any]]:
    """The models of the caller's tenant, with their champion and challenger versions."""
    return [
        ctx.cache.get(("model", c.name), lambda c=c: _describe(ctx, c))
        for c in ctx.policy.models(principal)
    ]


@router.get("/{model}")
def get_model(model: ModelName, principal: Reader, ctx: Context) -> dict[str, Any]:
    config = ctx.policy.model(principal, model)
    return ctx.cache.get(("model", model), lambda: _describe(ctx, config))


@router.get("/{model}/versions")
def list_versions(model: ModelName, principal: Reader, ctx: Context) -> list[dict[str, Any]]:
    """Every registered version, newest first: aliases, lineage tags, test metrics, archived."""
    from mlops_assets.training.versions import list_versions as versions

    config = ctx.policy.model(principal, model)
    return ctx.cache.get(
        ("versions", model), lambda: versions(ctx.registry, config.registered_model)
    )


@router.get("/{model}/features")
def features(model: ModelName, principal: FeatureReader, ctx: Context) -> dict[str, Any]:
    """The model's Feast feature service and the features it serves (from the Feast registry)."""
    config = ctx.policy.model(principal, model)
    return ctx.cache.get(("features", model), lambda: _features(ctx, config.feature_service))


def _features(ctx: Context, service: str) -> dict[str, Any]:
    try:
        found = ctx.resources.feature_store.store().get_feature_service(service)
    except Exception as err:  # Feast raises its own not-found types, or fails on no registry
        raise ApiError(
            409,
            "no_feature_service",
            f"feature service {service!r} is not applied yet ({type(err).__name__})",
        ) from None
    rows = [
        {"view": p.name, "name": f.name, "dtype": str(f.dtype), "description": f.description}
        for p in found.feature_view_projections
        for f in p.features
    ]
    return {"feature_service": service, "features": rows}


def apply_rollout(ctx: Context, principal: Any, model: str, action: str, **arguments: Any) -> dict:
    """One of serving/rollout.py's operations (promote, rollback, deploy, set_canary) on a model
    of the caller's tenant, acted as `api:<subject>`; its refusals as HTTP answers."""
    from mlops_assets.serving import rollout
    from mlops_assets.serving.deployment import DeploymentError

    config = ctx.policy.model(principal, model)
    actor = f"api:{principal.subject}"
    try:
        return getattr(rollout, action)(
            ctx.registry, ctx.resources.deployer, config, actor=actor, **arguments
        )
    except (DeploymentError, rollout.RolloutError) as err:
        raise rollout_errors(err) from None


@router.post("/{model}/promote")
def promote(model: ModelName, body: ReasonBody, principal: Writer, ctx: Context) -> dict[str, Any]:
    """The challenger becomes champion and takes all traffic (traffic first, then aliases)."""
    return apply_rollout(ctx, principal, model, "promote", reason=body.reason)


@router.post("/{model}/rollback")
def rollback(model: ModelName, body: ReasonBody, principal: Writer, ctx: Context) -> dict[str, Any]:
    """Drop a running canary, or restore the previous champion."""
    return apply_rollout(ctx, principal, model, "rollback", reason=body.reason)


@router.post("/{model}/versions/{version}/archive")
def archive(
    model: ModelName, version: Version, body: ReasonBody, principal: Writer, ctx: Context
) -> dict[str, Any]:
    """Archive a version that neither serves nor waits as challenger."""
    from mlops_assets.training.versions import VersionError
    from mlops_assets.training.versions import archive as archive_version

    config = ctx.policy.model(principal, model)
    actor = f"api:{principal.subject}"
    try:
        return archive_version(ctx.registry, config.registered_model, version, actor, body.reason)
    except VersionError as err:
        raise rollout_errors(err) from None
