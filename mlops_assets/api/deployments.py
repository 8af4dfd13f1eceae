"""/v1/deployments: what serves each of a tenant's models at what split; create a deployment of
the registry's champion (+ challenger as canary), change the canary's share, stop serving (the
same library calls as `mlops deploy`, `mlops status`, `mlops stop`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import ConfigDict, Field

from mlops_assets.api.context import Context, allowed
from mlops_assets.api.models import ModelName, Reason, ReasonBody, apply_rollout

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])
Reader = allowed("deployments:read")
Writer = allowed("deployments:write")


class Canary(Reason):
    model_config = ConfigDict(extra="forbid")

    percent: int = Field(ge=0, le=100, description="Share of customers sent to the challenger.")


def _status(ctx: Context, config: Any) -> dict[str, Any]:
    from mlops_assets.serving.rollout import status

    return {"model": config.name, **status(ctx.registry, ctx.resources.deployer, config)}


@router.get("")
def list_deployments(principal: Reader, ctx: Context) -> list[dict[str, Any]]:
    return [
        ctx.cache.get(("deployment", c.name), lambda c=c: _status(ctx, c))
        for c in ctx.policy.models(principal)
    ]


@router.get("/{model}")
def get_deployment(model: ModelName, principal: Reader, ctx: Context) -> dict[str, Any]:
    """Registry aliases, the active deployment spec, the split per version, the local server."""
    config = ctx.policy.model(principal, model)
    return ctx.cache.get(("deployment", model), lambda: _status(ctx, config))


@router.post("/{model}", status_code=201)
def create_deployment(
    model: ModelName, body: ReasonBody, principal: Writer, ctx: Context
) -> dict[str, Any]:
    """Serve the registry's champion, and its challenger as a canary at the configured share."""
    return apply_rollout(ctx, principal, model, "deploy", reason=body.reason)


@router.put("/{model}/canary")
def set_canary(
    model: ModelName, body: Annotated[Canary, Body()], principal: Writer, ctx: Context
) -> dict[str, Any]:
    """Change the running canary's share of customers (0..100)."""
    return apply_rollout(
        ctx, principal, model, "set_canary", percent=body.percent, reason=body.reason
    )


@router.delete("/{model}")
def delete_deployment(model: ModelName, principal: Writer, ctx: Context) -> dict[str, Any]:
    """Stop serving: the local model server drains and flushes its log; in production the
    InferenceService is deleted."""
    config = ctx.policy.model(principal, model)
    return {"model": config.name, "stopped": bool(ctx.resources.deployer.stop(config.name))}
