"""The closed loop: a sensor that retrains when monitoring degrades, and one that decides a canary.
Both run under the Dagster daemon (`dagster dev` runs it); the decisions themselves are pure
functions in mlops_assets/monitoring/decisions.py."""

import datetime as dt
import json

import dagster as dg

from mlops_assets.defs.training.resources import TrainingResource
from mlops_assets.model_config import ModelConfig

TRIGGER_TAG = "mlops/trigger"
MAX_TAG = 4000  # keep run tags readable in the UI


def retrain_sensor(config: ModelConfig) -> dg.SensorDefinition:
    job_name = f"retrain_{config.name}"

    @dg.sensor(
        name=f"retrain_{config.name}_on_degradation",
        job_name=job_name,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Launches {job_name} (fresh dataset, KFP training, gate, canary deployment) once per "
            f"degradation window: monitoring checks failing on {config.monitoring.consecutive_days}+ "
            f"consecutive days, at most once per {config.monitoring.cooldown_hours:g} h."
        ),
    )
    def retrain_on_degradation(context: dg.SensorEvaluationContext, training: TrainingResource):
        from mlops_assets.monitoring.decisions import retrain_decision
        from mlops_assets.monitoring.monitors import read_table

        cursor = json.loads(context.cursor) if context.cursor else {}
        handled = set(cursor.get("handled", []))
        last_launch = cursor.get("last_launch")
        in_flight = context.instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job_name,
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            ),
            limit=1,
        )
        if in_flight:
            return dg.SkipReason(
                f"{job_name} is already running ({in_flight[0].dagster_run.run_id})"
            )
        table = read_table(training.settings(), config)
        now = dt.datetime.now(dt.UTC)
        decision = retrain_decision(
            table,
            config.monitoring.consecutive_days,
            handled,
            dt.datetime.fromisoformat(last_launch) if last_launch else None,
            config.monitoring.cooldown_hours,
            now,
        )
        if not decision.launch:
            return dg.SkipReason(decision.reason)
        window = decision.window
        context.update_cursor(
            json.dumps({"handled": sorted(handled | {window.key}), "last_launch": now.isoformat()})
        )
        # Train on what was known when the degradation became conclusive (in production that is
        # every label known today; in the time-compressed demo it keeps later labels out).
        conclusive = window.start + dt.timedelta(days=config.monitoring.consecutive_days - 1)
        known_by = (conclusive + dt.timedelta(days=1)).isoformat()
        return dg.RunRequest(
            run_key=f"retrain-{config.name}-{window.key}",
            run_config={"ops": {"datasets__churn_v1": {"config": {"labels_known_by": known_by}}}},
            tags={
                TRIGGER_TAG: "degradation",
                "mlops/model": config.name,
                "mlops/window": f"{window.start}..{window.end}",
                "mlops/labels_known_by": known_by,
                "mlops/reason": decision.reason[:MAX_TAG],
                "mlops/evidence": json.dumps(decision.evidence, sort_keys=True)[:MAX_TAG],
            },
        )

    return retrain_on_degradation


def canary_sensor(config: ModelConfig, rollout_jobs: list[dg.JobDefinition]) -> dg.SensorDefinition:
    promote, rollback = f"promote_{config.name}", f"rollback_{config.name}"

    @dg.sensor(
        name=f"canary_{config.name}",
        jobs=rollout_jobs,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "While a canary runs, compares challenger and champion on the canary's labelled "
            f"predictions and launches {promote} or {rollback} once each arm has "
            f"{config.monitoring.canary_min_labelled} labelled rows."
        ),
    )
    def canary_decision_sensor(context: dg.SensorEvaluationContext, training: TrainingResource):
        from mlops_assets.lakehouse.catalog import catalog
        from mlops_assets.monitoring.decisions import canary_decision
        from mlops_assets.serving.batch import ensure_table
        from mlops_assets.serving.rollout import current_spec

        settings = training.settings()
        spec = current_spec(settings, config)
        if spec is None or not spec.challenger_version or not spec.canary_percent:
            return dg.SkipReason("no canary running")
        started = spec.updated_at
        # Rows scored since the canary started (scored_at is the run's wall clock; the
        # prediction_timestamp of a replayed day is that day's as-of time, before the start).
        predictions = (
            ensure_table(catalog(settings), config)
            .scan(
                row_filter=f"scored_at >= '{started.astimezone(dt.UTC).isoformat()}'",
                selected_fields=("model_version", "score", "actual", "scored_at"),
            )
            .to_pandas()
        )
        decision = canary_decision(
            predictions,
            spec.champion_version,
            spec.challenger_version,
            started,
            config.monitoring.canary_min_labelled,
            config.monitoring.canary_max_auc_regression,
        )
        if decision.action == "wait":
            return dg.SkipReason(decision.reason)
        job = promote if decision.action == "promote" else rollback
        return dg.RunRequest(
            job_name=job,
            run_key=f"canary-{config.name}-v{spec.challenger_version}-{started.isoformat()}",
            run_config={"ops": {f"{job}_op": {"config": {"reason": f"canary: {decision.reason}"}}}},
            tags={
                TRIGGER_TAG: "canary",
                "mlops/model": config.name,
                "mlops/canary_numbers": json.dumps(decision.numbers, sort_keys=True),
            },
        )

    return canary_decision_sensor
