"""Online drift, per model: the sensor that reads what is new in the inference log (Iceberg
snapshots since its cursor), slides a window of the latest logged requests, compares it with the
serving champion's reference (mlops_assets/monitoring/online_drift.py), records each evaluation
as the result of the `online_drift_within_thresholds` check of `monitoring/<model>/online_drift`,
and on a sustained breach launches the same retraining as the daily retraining sensor, once per
incident and under the same cooldown (the newest run of the retrain job counts for both).

The sensor's cursor holds the stream position and the incident state; the window's rows (at most
`window_rows`) sit in a Parquet file under the data folder named by a token of the cursor, so a
fresh cursor starts a fresh window. Executing the check by hand evaluates the current window."""

import datetime as dt
import json
import secrets
from pathlib import Path

import dagster as dg

from mlops_assets.defs.keys import (
    dataset_run_config,
    deployment_key,
    monitor_key,
    online_drift_sensor_name,
    retrain_job_name,
)
from mlops_assets.defs.monitoring.sensors import last_retrain_launch, retrain_in_flight
from mlops_assets.defs.tags import MAX_TAG, SENSOR_INTERVAL_S, TRIGGER_TAG
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.resources import LakehouseCatalogResource, ModelRegistryResource
from mlops_assets.settings import get_settings

MONITOR = "online_drift"
CHECK = "online_drift_within_thresholds"
COLUMNS = ("features", "score", "model_version", "requested_at")
_REFERENCES: dict[tuple, object] = {}  # (model, version, file mtime) -> prepared reference


def online_spec(model: ModelConfig) -> dg.AssetSpec:
    return dg.AssetSpec(
        monitor_key(model, MONITOR),
        deps=[deployment_key(model)],
        group_name="monitoring",
        kinds={"iceberg"},
        description=(
            f"Drift of the live requests of {model.name} (the inference log "
            f"{INFERENCE_LOG.name(model.name)}) against the champion's training data: a window of "
            f"the latest {model.monitoring.online.window_rows} requests, evaluated by the sensor "
            f"{online_drift_sensor_name(model)}."
        ),
    )


def online_check(model: ModelConfig) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=monitor_key(model, MONITOR),
        name=CHECK,
        description=(
            "PSI and KS of each feature and the score PSI of the latest logged requests against "
            "the champion's training reference; fails on too many drifting features, a missing "
            "one, or a shifted score distribution. Recorded by the sensor on every window."
        ),
    )
    def check(lakehouse: LakehouseCatalogResource, model_registry: ModelRegistryResource):
        import pandas as pd

        from mlops_assets.monitoring.results import MonitoringError

        files = sorted(_folder().glob(f"{model.name}-*.parquet"), key=lambda p: p.stat().st_mtime)
        window = pd.read_parquet(files[-1]) if files else pd.DataFrame()
        limits = _limits(model)
        if len(window) < limits.min_rows:
            return dg.AssetCheckResult(
                passed=True,
                description=f"{len(window)} logged requests in the window (need {limits.min_rows})",
                metadata={"window_rows": len(window)},
            )
        try:
            version, result = _evaluate(
                model, lakehouse.catalog(), model_registry.registry(), window
            )
        except MonitoringError as err:
            raise dg.Failure(f"online drift of {model.name}: {err}") from None
        return dg.AssetCheckResult(
            passed=not result.breached,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.reason,
            metadata=_metadata(result, version),
        )

    return check


def online_drift_sensor(model: ModelConfig) -> dg.SensorDefinition:
    job_name = retrain_job_name(model)
    online = model.monitoring.online

    @dg.sensor(
        name=online_drift_sensor_name(model),
        job_name=job_name,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Reads new rows of {INFERENCE_LOG.name(model.name)}, checks a window of the latest "
            f"{online.window_rows} requests for drift every {online.step_rows} requests, and "
            f"launches {job_name} once per incident of {online.consecutive_windows}+ breached "
            f"windows in a row, at most once per {model.monitoring.cooldown_hours:g} h (shared "
            "with the daily retraining sensor)."
        ),
    )
    def online_drift(
        context: dg.SensorEvaluationContext,
        lakehouse: LakehouseCatalogResource,
        model_registry: ModelRegistryResource,
    ):
        return tick(model, context, lakehouse.catalog(), model_registry.registry())

    return online_drift


def tick(model: ModelConfig, context, catalog, registry) -> dg.SensorResult:
    """One evaluation: read, slide, and (every `step_rows` new rows) check and decide."""
    from mlops_assets.monitoring.results import MonitoringError
    from mlops_assets.monitoring.stream import StreamCursor, read_new_rows

    limits = _limits(model)
    cursor = json.loads(context.cursor) if context.cursor else {}
    cursor.setdefault("window", secrets.token_hex(6))
    new = read_new_rows(
        catalog,
        INFERENCE_LOG.name(model.name),
        StreamCursor.from_dict(cursor.get("stream")),
        limits.max_rows_per_read,
        COLUMNS,
    )
    cursor["stream"] = new.cursor.to_dict()
    window = _slide(model, cursor["window"], new.rows, limits.window_rows)
    cursor["pending"] = cursor.get("pending", 0) + len(new.rows)
    if len(window) < limits.min_rows or cursor["pending"] < limits.step_rows:
        return dg.SensorResult(
            skip_reason=(
                f"{len(new.rows)} new logged requests ({new.mode}); window {len(window)} rows "
                f"(evaluated from {limits.min_rows}), {cursor['pending']} since the last window "
                f"(evaluated every {limits.step_rows})"
            ),
            cursor=json.dumps(cursor),
        )
    try:
        version, result = _evaluate(model, catalog, registry, window)
    except MonitoringError as err:  # no champion yet, or no reference for it
        return dg.SensorResult(
            skip_reason=f"online drift not evaluated: {err}", cursor=json.dumps(cursor)
        )
    request = _decide(model, context.instance, cursor, result)
    metadata = {
        **_metadata(result, version),
        "new_rows": len(new.rows),
        "read_mode": new.mode,
        "skipped_rows": new.skipped_rows,
    }
    event = dg.AssetCheckEvaluation(
        asset_key=monitor_key(model, MONITOR),
        check_name=CHECK,
        passed=not result.breached,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.reason,
        metadata={**metadata, "decision": cursor["last_decision"]},
    )
    return dg.SensorResult(
        run_requests=[request] if request else None,
        asset_events=[event],
        cursor=json.dumps(cursor),
    )


def _decide(model: ModelConfig, instance, cursor: dict, result) -> dg.RunRequest | None:
    """Step the incident state in `cursor`; the retraining request when it is due."""
    from mlops_assets.monitoring.online_drift import IncidentState, decide

    job_name = retrain_job_name(model)
    now = dt.datetime.now(dt.UTC)
    previous = IncidentState.from_dict(cursor.get("incident"))
    last = last_retrain_launch(instance, job_name, cursor.get("last_launch"))
    state, decision = decide(previous, result, now, last, _limits(model))
    running = retrain_in_flight(instance, job_name) if decision.launch else None
    if running:  # ask again on the next breached window
        state.launched = False
        decision.launch, decision.reason = False, f"{job_name} is already running ({running})"
    cursor.update(pending=0, incident=state.to_dict(), last_decision=decision.reason[:MAX_TAG])
    if not decision.launch:
        return None
    cursor["last_launch"] = now.isoformat()
    # Train on every label known now (the production meaning of the wall clock).
    known_by = now.date() + dt.timedelta(days=1)
    return dg.RunRequest(
        run_key=f"retrain-{model.name}-online-{decision.incident}",
        run_config=dataset_run_config(model, known_by),
        tags={
            TRIGGER_TAG: "online_drift",
            "mlops/model": model.name,
            "mlops/incident": decision.incident or "",
            "mlops/labels_known_by": known_by.isoformat(),
            "mlops/reason": decision.reason[:MAX_TAG],
            "mlops/evidence": json.dumps(decision.evidence, sort_keys=True)[:MAX_TAG],
        },
    )


def _limits(model: ModelConfig):
    from mlops_assets.monitoring.online_drift import OnlineLimits

    return OnlineLimits.of(model.monitoring)


def _folder() -> Path:
    return get_settings().data_dir / "monitoring" / "online"


def _slide(model: ModelConfig, token: str, rows, size: int):
    """The window file of this cursor, with `rows` (Arrow) slid in; other windows of the model
    (older cursors) are removed."""
    import pandas as pd

    from mlops_assets.monitoring.online_drift import slide

    folder = _folder()
    path = folder / f"{model.name}-{token}.parquet"
    window = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=list(COLUMNS))
    if len(rows) == 0:
        return window
    window = slide(window, rows.to_pandas(), size)
    folder.mkdir(parents=True, exist_ok=True)
    window.to_parquet(path.with_suffix(".tmp"), index=False)
    path.with_suffix(".tmp").replace(path)
    for stale in folder.glob(f"{model.name}-*.parquet"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return window


def _evaluate(model: ModelConfig, catalog, registry, window):
    """(champion version, WindowResult) of the window against the champion's reference."""
    from mlops_assets.monitoring.inputs import MonitorInputs
    from mlops_assets.monitoring.online_drift import Reference, evaluate_window, features_of

    limits = _limits(model)
    inputs = MonitorInputs(model, catalog, registry, get_settings())
    version = inputs.champion()
    frame = inputs.reference(version)  # cached per version under data/monitoring/reference
    cached = (
        inputs.settings.data_dir / "monitoring" / "reference" / f"{model.name}-v{version}.parquet"
    )
    key = (model.name, version, str(cached), cached.stat().st_mtime if cached.exists() else 0)
    if key not in _REFERENCES:
        _REFERENCES.clear()
        _REFERENCES[key] = Reference.of(frame, limits)
    return version, evaluate_window(_REFERENCES[key], features_of(window), limits, version)


def _metadata(result, version: str) -> dict:
    metadata = {
        "window_rows": result.rows,
        "champion_version": version,
        "drifted_features": ", ".join(result.drifted) or "none",
        "drifted_share": round(result.drifted_share, 4),
        "top_psi": dg.MetadataValue.json(result.top_psi()),
    }
    if result.score_psi is not None:
        metadata["score_psi"] = round(result.score_psi, 4)
    if result.missing:
        metadata["missing_features"] = ", ".join(result.missing)
    return metadata


@dg.definitions
def online_drift() -> dg.Definitions:
    models = list(model_configs().values())
    return dg.Definitions(
        assets=[online_spec(m) for m in models],
        asset_checks=[online_check(m) for m in models],
        sensors=[online_drift_sensor(m) for m in models],
    )
