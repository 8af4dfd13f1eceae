"""/v1/runs: launch a model's retraining or a backfill of its scoring or monitoring over a range
of days, on the Dagster webserver (GraphQL), and read a run back. Runs carry the tenant and
model as tags: another tenant's run is answered 404, like an unknown id."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_assets.api.access import NAME_PATTERN
from mlops_assets.api.context import Context, allowed
from mlops_assets.api.dagster import DagsterRuns
from mlops_assets.api.errors import not_found

router = APIRouter(prefix="/v1/runs", tags=["runs"])
Reader = allowed("runs:read")
Retrainer = allowed("runs:retrain")
Backfiller = allowed("runs:backfill")
MAX_BACKFILL_DAYS = 400
TENANT_TAG, MODEL_TAG, ACTOR_TAG, REASON_TAG = (
    "mlops/tenant",
    "mlops/model",
    "mlops/actor",
    "mlops/reason",
)


class Retrain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=NAME_PATTERN)
    reason: str = Field(min_length=1, max_length=500)
    labels_known_by: dt.date | None = Field(
        None, description="Train on the labels known by this day (default: all landed)."
    )


class Backfill(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=NAME_PATTERN)
    stage: Literal["scoring", "monitoring"]
    start: dt.date
    end: dt.date
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _range(self) -> Backfill:
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days >= MAX_BACKFILL_DAYS:
            raise ValueError(f"at most {MAX_BACKFILL_DAYS} days per backfill")
        return self


def _tags(principal: Any, model: str, reason: str) -> dict[str, str]:
    from mlops_assets.defs.tags import TRIGGER_TAG

    return {
        TRIGGER_TAG: "api",
        TENANT_TAG: principal.tenant,
        MODEL_TAG: model,
        ACTOR_TAG: principal.subject,
        REASON_TAG: reason,
    }


def _runs(ctx: Context) -> DagsterRuns:
    return DagsterRuns(ctx.settings.dagster_url)


@router.post("/retrain", status_code=202)
def retrain(body: Annotated[Retrain, Body()], principal: Retrainer, ctx: Context) -> dict[str, Any]:
    """Launch the model's retraining job (fresh dataset, KFP training, gate, deployment)."""
    from mlops_assets.defs.keys import dataset_run_config, retrain_job_name

    config = ctx.policy.model(principal, body.model)
    run_config = dataset_run_config(config, body.labels_known_by) if body.labels_known_by else None
    tags = _tags(principal, config.name, body.reason)
    run_id = _runs(ctx).launch_job(retrain_job_name(config), tags, run_config)
    return {"run_id": run_id, "kind": "run", "model": config.name}


def _stage_assets(config: Any, stage: str) -> list[list[str]]:
    from mlops_assets.defs.keys import actuals_key, monitor_key, predictions_key
    from mlops_assets.monitoring.registry import MONITORS

    if stage == "scoring":
        keys = [predictions_key(config), actuals_key(config)]
    else:
        keys = [monitor_key(config, name) for name in MONITORS]
    return [list(key.path) for key in keys]


@router.post("/backfill", status_code=202)
def backfill(
    body: Annotated[Backfill, Body()], principal: Backfiller, ctx: Context
) -> dict[str, Any]:
    """Backfill the model's scoring (predictions and actuals) or monitoring over [start, end]."""
    config = ctx.policy.model(principal, body.model)
    days = [str(body.start + dt.timedelta(days=d)) for d in range((body.end - body.start).days + 1)]
    tags = _tags(principal, config.name, body.reason)
    backfill_id = _runs(ctx).launch_backfill(_stage_assets(config, body.stage), days, tags)
    return {"run_id": backfill_id, "kind": "backfill", "model": config.name, "days": len(days)}


@router.get("/{run_id}")
def get_run(
    run_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")], principal: Reader, ctx: Context
) -> dict[str, Any]:
    """A run or backfill launched for one of the caller's tenant's models: status and tags."""
    found = _runs(ctx).read(run_id)
    if found["tags"].get(TENANT_TAG) != principal.tenant:
        raise not_found(f"run {run_id!r}")
    return found
