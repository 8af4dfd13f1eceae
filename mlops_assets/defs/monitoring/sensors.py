"""The retraining sensor of each model: it reads the monitoring table, and once a degradation is
conclusive (a retrain-worthy check failing on enough consecutive days, outside the cooldown) it
launches the model's retraining job, once per degradation window. It runs under the Dagster
daemon; the decision itself is a pure function (mlops_assets/monitoring/decisions.py)."""

import datetime as dt
import json

import dagster as dg

from mlops_assets.defs.keys import dataset_run_config, retrain_job_name, retrain_sensor_name
from mlops_assets.defs.tags import MAX_TAG, SENSOR_INTERVAL_S, TRIGGER_TAG
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.resources import LakehouseCatalogResource

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
SENSOR_TRIGGERS = ("degradation", "online_drift")  # TRIGGER_TAG of the retrainings sensors launch


def retrain_sensor(model: ModelConfig) -> dg.SensorDefinition:
    job_name = retrain_job_name(model)
    limits = model.monitoring

    @dg.sensor(
        name=retrain_sensor_name(model),
        job_name=job_name,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Launches {job_name} (fresh dataset, KFP training, gate, canary deployment) once per "
            f"degradation window: monitoring checks failing on {limits.consecutive_days}+ "
            f"consecutive days, at most once per {limits.cooldown_hours:g} h."
        ),
    )
    def retrain_on_degradation(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseCatalogResource
    ):
        from mlops_assets.monitoring.decisions import retrain_decision
        from mlops_assets.monitoring.results import read_table

        running = retrain_in_flight(context.instance, job_name)
        if running:
            return dg.SkipReason(f"{job_name} is already running ({running})")
        cursor = json.loads(context.cursor) if context.cursor else {}
        handled = set(cursor.get("handled", []))
        now = dt.datetime.now(dt.UTC)
        decision = retrain_decision(
            read_table(lakehouse.catalog(), model),
            limits.consecutive_days,
            handled,
            last_retrain_launch(context.instance, job_name, cursor.get("last_launch")),
            limits.cooldown_hours,
            now,
        )
        if not decision.launch:
            return dg.SkipReason(decision.reason)
        cursor = {
            "handled": sorted(handled | {decision.window.key}),
            "last_launch": now.isoformat(),
        }
        context.update_cursor(json.dumps(cursor))
        return _run_request(model, decision)

    return retrain_on_degradation


def retrain_in_flight(instance: dg.DagsterInstance, job_name: str) -> str | None:
    """The run id of a queued or running retraining of the job, if any."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=ACTIVE), limit=1
    )
    return records[0].dagster_run.run_id if records else None


def last_retrain_launch(
    instance: dg.DagsterInstance, job_name: str, own: str | None = None
) -> dt.datetime | None:
    """When a sensor last launched the model's retraining: the newest run of its retrain job
    triggered by a sensor (daily degradation or online drift; a first model, a schedule or a user
    does not start the cooldown), or the sensor's own record (`own`, ISO), the later one. Every
    retraining sensor of a model shares the cooldown through this."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, tags={TRIGGER_TAG: list(SENSOR_TRIGGERS)}),
        limit=1,
    )
    times = [dt.datetime.fromtimestamp(r.create_timestamp.timestamp(), dt.UTC) for r in records]
    times += [dt.datetime.fromisoformat(own)] if own else []
    return max(times, default=None)


def _run_request(model: ModelConfig, decision) -> dg.RunRequest:
    window = decision.window
    # Train on what was known when the degradation became conclusive (in production that is every
    # label known today; in the time-compressed demo it keeps later labels out).
    conclusive = window.start + dt.timedelta(days=model.monitoring.consecutive_days - 1)
    known_by = conclusive + dt.timedelta(days=1)
    return dg.RunRequest(
        run_key=f"retrain-{model.name}-{window.key}",
        run_config=dataset_run_config(model, known_by),
        tags={
            TRIGGER_TAG: "degradation",
            "mlops/model": model.name,
            "mlops/window": f"{window.start}..{window.end}",
            "mlops/labels_known_by": known_by.isoformat(),
            "mlops/reason": decision.reason[:MAX_TAG],
            "mlops/evidence": json.dumps(decision.evidence, sort_keys=True)[:MAX_TAG],
        },
    )


@dg.definitions
def retraining_sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[retrain_sensor(m) for m in model_configs().values()])
