"""/v1/monitoring/{model}: the latest state of each monitor's check, any number over time (from
the Iceberg table `monitoring.<model>_daily`), the drift and performance limits of the model
config, and where alerts go (deploy/api/access.yaml)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from fastapi import APIRouter, Query

from mlops_assets.api.context import Context, allowed
from mlops_assets.api.models import ModelName

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])
Reader = allowed("monitoring:read")
Word = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]


def _table(ctx: Context, config: Any) -> Any:
    from mlops_assets.monitoring.results import read_table

    return ctx.cache.get(("monitoring", config.name), lambda: read_table(ctx.catalog(), config))


def _value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return None if value is None or value != value else value  # NaN / NaT -> null


def _latest(table: Any) -> list[dict[str, Any]]:
    status = table[table["metric"] == "status"]
    checks = []
    for monitor, group in status.sort_values("day").groupby("monitor"):
        last = group.iloc[-1]
        checks.append(
            {
                "monitor": monitor,
                "day": _value(last["day"]),
                "status": last["detail"],
                "breached": bool(last["breached"]),
                "failed_days": int(group["breached"].sum()),
                "days": len(group),
            }
        )
    return checks


@router.get("/{model}/checks")
def checks(model: ModelName, principal: Reader, ctx: Context) -> list[dict[str, Any]]:
    """Each monitor's last monitored day: ok / breached / pending / no_data, and its record."""
    config = ctx.policy.model(principal, model)
    return _latest(_table(ctx, config))


@router.get("/{model}/metrics")
def metrics(
    model: ModelName,
    principal: Reader,
    ctx: Context,
    metric: Word = None,
    monitor: Word = None,
    feature: Word = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """Numbers over time, oldest first, filtered by metric, monitor, feature and day range."""
    config = ctx.policy.model(principal, model)
    rows = _table(ctx, config)
    for column, wanted in (("metric", metric), ("monitor", monitor), ("feature", feature)):
        if wanted is not None:
            rows = rows[rows[column] == wanted]
    if start is not None:
        rows = rows[rows["day"] >= start]
    if end is not None:
        rows = rows[rows["day"] <= end]
    columns = ["day", "monitor", "metric", "feature", "model_version", "value", "threshold"]
    rows = rows.sort_values(["day", "monitor", "metric"]).head(limit)
    return [
        {**{c: _value(r[c]) for c in columns}, "breached": bool(r["breached"])}
        for r in rows.to_dict("records")
    ]


@router.get("/{model}/limits")
def limits(model: ModelName, principal: Reader, ctx: Context) -> dict[str, Any]:
    """The thresholds the monitoring checks and sensors apply (model_configs/<model>.yaml)."""
    return ctx.policy.model(principal, model).monitoring.model_dump()


@router.get("/{model}/alerts")
def alerts(model: ModelName, principal: Reader, ctx: Context) -> list[dict[str, Any]]:
    """Where a breach of each monitor of this model is routed."""
    config = ctx.policy.model(principal, model)
    return [r.model_dump() for r in ctx.policy.alert_routes(principal, config.name)]
