"""The canary sensor of each model: while a canary runs, it compares challenger and champion on
the canary's labelled predictions and launches the promote or rollback job. It runs under the
Dagster daemon; the decision itself is a pure function (mlops_assets/monitoring/decisions.py)."""

import datetime as dt
import json

import dagster as dg

from mlops_assets.defs.keys import rollout_job_name
from mlops_assets.defs.tags import SENSOR_INTERVAL_S, TRIGGER_TAG
from mlops_assets.model_config import ModelConfig
from mlops_assets.resources import LakehouseCatalogResource, ModelRegistryResource


def canary_sensor(model: ModelConfig, rollout_jobs: list[dg.JobDefinition]) -> dg.SensorDefinition:
    promote, rollback = (rollout_job_name(a, model) for a in ("promote", "rollback"))

    @dg.sensor(
        name=f"canary_{model.name}",
        jobs=rollout_jobs,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "While a canary runs, compares challenger and champion on the canary's labelled "
            f"predictions and launches {promote} or {rollback} once each arm has "
            f"{model.monitoring.canary_min_labelled} labelled rows."
        ),
    )
    def canary_decision_sensor(
        context: dg.SensorEvaluationContext,
        lakehouse: LakehouseCatalogResource,
        model_registry: ModelRegistryResource,
    ):
        from mlops_assets.monitoring.decisions import canary_decision
        from mlops_assets.serving.rollout import current_spec

        spec = current_spec(model_registry.registry(), model)
        if spec is None or not spec.challenger_version or not spec.canary_percent:
            return dg.SkipReason("no canary running")
        started = spec.updated_at
        predictions = _scored_since(lakehouse.catalog(), model, started)
        limits = model.monitoring
        decision = canary_decision(
            predictions,
            spec.champion_version,
            spec.challenger_version,
            started,
            limits.canary_min_labelled,
            limits.canary_max_auc_regression,
        )
        if decision.action == "wait":
            return dg.SkipReason(decision.reason)
        job = promote if decision.action == "promote" else rollback
        return dg.RunRequest(
            job_name=job,
            run_key=f"canary-{model.name}-v{spec.challenger_version}-{started.isoformat()}",
            run_config={"ops": {f"{job}_op": {"config": {"reason": f"canary: {decision.reason}"}}}},
            tags={
                TRIGGER_TAG: "canary",
                "mlops/model": model.name,
                "mlops/canary_numbers": json.dumps(decision.numbers, sort_keys=True),
            },
        )

    return canary_decision_sensor


def _scored_since(catalog, model: ModelConfig, started: dt.datetime):
    """The predictions scored since the canary started (scored_at is the run's wall clock; the
    prediction_timestamp of a replayed day is that day's as-of time, before the start)."""
    from mlops_assets.serving.batch import predictions_table

    return (
        predictions_table(model)
        .open(catalog, model.name)
        .scan(
            row_filter=f"scored_at >= '{started.astimezone(dt.UTC).isoformat()}'",
            selected_fields=("model_version", "score", "actual", "scored_at"),
        )
        .to_pandas()
    )
