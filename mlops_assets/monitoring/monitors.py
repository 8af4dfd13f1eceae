"""The daily monitors of a model, and the Iceberg table they write.

For a monitoring day D:
- performance: the predictions of day D - (churn window + 1), whose actuals are due by D, against
  those actuals (ROC AUC, precision, recall, calibration), overall and per model version;
- feature_drift: the features of the customers scored on D against the serving champion's training
  data (KS test and PSI per feature);
- prediction_drift: the day's score distribution against the champion's scores on its training data;
- data_quality: rows scored against the trailing week, null shares, features missing from the data.

Every number lands in `monitoring.<model>_daily` (one row per metric, with its threshold and whether
it was breached); a re-run of a day replaces that day's rows for that monitor. `feature` is NULL for
a number about the model rather than one feature, `model_version` is NULL for a number over all
versions together.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.model_config import ModelConfig
from mlops_assets.monitoring.drift import ks, psi_categorical, psi_numeric
from mlops_assets.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

# Monitors whose breach a retraining can fix; bad data is not fixed by retraining.
RETRAIN_ON = ("performance", "feature_drift", "prediction_drift")
CHURN_WINDOW_DAYS = 30  # dbt var churn_window_days: actuals are known this long after a prediction
NAMESPACE = "monitoring"

SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("monitor", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("feature", pa.string(), nullable=True),  # NULL: not about one feature
        pa.field("model_version", pa.string(), nullable=True),  # NULL: all versions together
        pa.field("value", pa.float64(), nullable=True),
        pa.field("threshold", pa.float64(), nullable=True),
        pa.field("breached", pa.bool_(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class MonitoringError(ValueError):
    pass


@dataclass
class MonitorResult:
    monitor: str
    day: dt.date
    status: str  # ok | breached | pending | no_data
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def breached(self) -> bool:
        return self.status == "breached"

    def row(
        self,
        metric: str,
        value: float | None,
        threshold: float | None = None,
        *,
        breached: bool = False,
        feature: str | None = None,
        version: str | None = None,
        detail: str = "",
    ) -> None:
        self.rows.append(
            {
                "metric": metric,
                "feature": feature,
                "model_version": version,
                "value": None if value is None or not np.isfinite(value) else float(value),
                "threshold": threshold,
                "breached": bool(breached),
                "detail": detail,
            }
        )


def table_name(config: ModelConfig) -> str:
    return f"{NAMESPACE}.{config.name}_daily"


def ensure_table(cat: Any, config: ModelConfig) -> Any:
    """The model's monitoring table, partitioned by day. A table from before NULL meant "no
    feature" / "all versions" (it used '') is evolved first."""
    from mlops_assets.lakehouse.catalog import partitioned_table
    from mlops_assets.lakehouse.evolution import evolve

    table = partitioned_table(cat, table_name(config), SCHEMA, "day")
    return evolve(
        table,
        outdated=lambda schema: any(schema.find_field(n).required for n in _NULLABLE),
        change=_make_nullable,
        rewrite=_empty_to_null,
    )


_NULLABLE = ("feature", "model_version")


def _make_nullable(update: Any) -> None:
    for name in _NULLABLE:
        update.update_column(name, required=False)


def _empty_to_null(rows: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    for name in _NULLABLE:
        column = rows[name]
        empty = pc.equal(column, "")
        rows = rows.set_column(
            rows.schema.get_field_index(name),
            pa.field(name, pa.string(), nullable=True),
            pc.if_else(empty, pa.scalar(None, pa.string()), column),
        )
    return rows.select(SCHEMA.names).cast(SCHEMA)


def write_results(settings: Settings, config: ModelConfig, results: list[MonitorResult]) -> None:
    """Replace the days' rows of these monitors in one commit (a run over many days is one
    snapshot, and readers never see half of it)."""
    from pyiceberg.expressions import And, In

    from mlops_assets.lakehouse.catalog import catalog

    if not results:
        return
    table = ensure_table(catalog(settings), config)
    now = dt.datetime.now(dt.UTC)
    frames = []
    for result in results:
        # One status row per monitor and day: what the sensors read (1 = the check failed).
        status = {
            "metric": "status",
            "feature": None,
            "model_version": None,
            "value": 1.0 if result.breached else 0.0,
            "threshold": None,
            "breached": result.breached,
            "detail": result.status,
        }
        frame = pd.DataFrame([status, *result.rows])
        frames.append(frame.assign(day=result.day, monitor=result.monitor, computed_at=now))
    frame = pd.concat(frames, ignore_index=True)
    arrow = pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
    days = sorted({r.day for r in results})
    monitors = sorted({r.monitor for r in results})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        table.overwrite(arrow, overwrite_filter=And(In("day", days), In("monitor", monitors)))


def write_result(settings: Settings, config: ModelConfig, result: MonitorResult) -> None:
    write_results(settings, config, [result])


def read_table(settings: Settings, config: ModelConfig) -> pd.DataFrame:
    from mlops_assets.lakehouse.catalog import catalog

    return ensure_table(catalog(settings), config).scan().to_pandas()


# -- the reference: the serving champion's training data -----------------------------------------


def champion_version(settings: Settings, config: ModelConfig) -> str:
    from mlops_assets.training.registry import CHAMPION, alias_version, client

    version = alias_version(client(settings), config.registered_model, CHAMPION)
    if version is None:
        raise MonitoringError(f"model {config.registered_model} has no champion to monitor")
    return version


def reference(settings: Settings, config: ModelConfig, version: str) -> pd.DataFrame:
    """A sample (<= 20k rows) of the version's training split with the version's scores, cached per
    version under data/monitoring/reference/."""
    import tempfile

    from mlops_assets.datasets.versioning import pull
    from mlops_assets.training.estimators import dataset_schema, read_split
    from mlops_assets.training.registry import client, load_model

    folder = settings.data_dir / "monitoring" / "reference"
    path = folder / f"{config.name}-v{version}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    md5 = client(settings).get_model_version(config.registered_model, version).tags.get("dvc_md5")
    if not md5:
        raise MonitoringError(
            f"{config.registered_model} v{version} has no dvc_md5 tag: no reference"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        dataset = pull(settings, md5, Path(tmp) / "dataset")
        names = dataset_schema(dataset)["features"]
        train = read_split(dataset, "train")
    # The most recent four weeks of the training split: what the model learned the world looks
    # like just before it was trained (the whole split would read a shop's growth as drift).
    if "event_timestamp" in train.columns:
        ts = pd.to_datetime(train["event_timestamp"])
        train = train[ts >= ts.max() - pd.Timedelta(days=28)]
    sample = train.sample(min(len(train), 20_000), random_state=0)
    model = load_model(settings, config.registered_model, version)
    columns = [str(c) for c in model.feature_names_in_]
    # The model's own inputs (raw timestamps are not features; recency is).
    out = sample[[n for n in names if n in columns]].copy()
    out["__score"] = model.predict_proba(sample[columns])[:, 1]
    out.to_parquet(path, index=False)
    return out


# -- the monitors ----------------------------------------------------------------------------------


def _predictions(settings: Settings, config: ModelConfig, day: dt.date) -> pd.DataFrame:
    from pyiceberg.expressions import EqualTo

    from mlops_assets.lakehouse.catalog import catalog
    from mlops_assets.serving.batch import ensure_table as predictions_table

    table = predictions_table(catalog(settings), config)
    return table.scan(row_filter=EqualTo("prediction_date", day)).to_pandas()


def _daily_counts(
    settings: Settings, config: ModelConfig, first: dt.date, last: dt.date
) -> dict[dt.date, int]:
    """Predictions per day in [first, last], from one scan."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

    from mlops_assets.lakehouse.catalog import catalog
    from mlops_assets.serving.batch import ensure_table as predictions_table

    table = predictions_table(catalog(settings), config)
    days = table.scan(
        row_filter=And(
            GreaterThanOrEqual("prediction_date", first), LessThanOrEqual("prediction_date", last)
        ),
        selected_fields=("prediction_date",),
    ).to_arrow()["prediction_date"]
    return pd.Series(days.to_pylist(), dtype=object).value_counts().to_dict()


def _holdout_auc(settings: Settings, config: ModelConfig, version: str) -> float | None:
    """The version's ROC AUC on its training holdout, as logged to MLflow."""
    from mlops_assets.training.registry import client

    mlflow_client = client(settings)
    try:
        run_id = mlflow_client.get_model_version(config.registered_model, version).run_id
        return mlflow_client.get_run(run_id).data.metrics.get("model_test_roc_auc")
    except Exception:  # an unregistered version (e.g. a deleted one): no relative floor
        return None


def performance(settings: Settings, config: ModelConfig, day: dt.date) -> MonitorResult:
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    from mlops_assets.training.estimators import expected_calibration_error

    limits = config.monitoring
    evaluated = day - dt.timedelta(days=CHURN_WINDOW_DAYS + 1)
    rows = _predictions(settings, config, evaluated)
    labelled = rows[rows["actual"].notna()]
    result = MonitorResult("performance", day, "ok", {"evaluated_prediction_day": str(evaluated)})
    if labelled.empty:
        result.status = "pending" if len(rows) else "no_data"
        detail = (
            f"no actuals yet for the predictions of {evaluated}"
            if len(rows)
            else f"no predictions on {evaluated} to evaluate"
        )
        result.summary["detail"] = detail
        result.row("labelled_rows", 0, detail=detail)
        return result
    # None: all versions together (NULL in the table), then each version.
    groups = [(None, labelled)] + [(str(v), g) for v, g in labelled.groupby("model_version")]
    for version, group in groups:
        y, score = group["actual"].to_numpy(int), group["score"].to_numpy()
        n = len(group)
        result.row("labelled_rows", n, version=version, detail=str(evaluated))
        if len(np.unique(y)) < 2 or n < limits.min_labelled_rows:
            result.row(
                "roc_auc",
                None,
                limits.min_roc_auc,
                version=version,
                detail=f"{n} labelled rows, {len(np.unique(y))} class(es): not enough to judge",
            )
            continue
        auc = float(roc_auc_score(y, score))
        ece = expected_calibration_error(y, score)
        predicted = (score >= config.decision_threshold).astype(int)
        # The floor: the config's absolute minimum, or the serving versions' own holdout AUC minus
        # the allowed drop, whichever is higher.
        served = [version] if version else sorted(group["model_version"].astype(str).unique())
        holdout = [h for h in (_holdout_auc(settings, config, v) for v in served) if h is not None]
        floor = max([limits.min_roc_auc] + [h - limits.max_roc_auc_drop for h in holdout])
        result.row("roc_auc", auc, floor, breached=auc < floor, version=version)
        if holdout:
            result.row("holdout_roc_auc", float(np.mean(holdout)), version=version)
        result.row("ece", ece, limits.max_ece, breached=ece > limits.max_ece, version=version)
        result.row(
            "precision", float(precision_score(y, predicted, zero_division=0)), version=version
        )
        result.row("recall", float(recall_score(y, predicted, zero_division=0)), version=version)
        result.row("churn_rate", float(y.mean()), version=version)
        result.row("mean_score", float(score.mean()), version=version)
        if version is None:
            result.summary.update(roc_auc=round(auc, 4), ece=round(ece, 4), labelled_rows=n)
    overall = [r for r in result.rows if r["model_version"] is None and r["breached"]]
    if overall:
        result.status = "breached"
        result.summary["breaches"] = [
            f"{r['metric']}={r['value']:.4f} (limit {r['threshold']})" for r in overall
        ]
    return result


def feature_drift(
    settings: Settings, config: ModelConfig, store: FeatureStore, day: dt.date
) -> MonitorResult:
    from mlops_assets.serving.batch import offline_features

    limits = config.monitoring
    version = champion_version(settings, config)
    ref = reference(settings, config, version)
    as_of = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    current = offline_features(store, config.feature_service, as_of)
    result = MonitorResult("feature_drift", day, "ok", {"reference_version": version})
    if current.empty:
        result.status = "no_data"
        result.row("rows", 0, detail=f"no active customers on {day}")
        return result
    features = [c for c in ref.columns if c != "__score" and c not in limits.drift_exclude]
    missing = [f for f in features if f not in current.columns]
    drifted = []
    for name in features:
        if name in missing:
            result.row(
                "psi",
                None,
                limits.psi_max,
                feature=name,
                version=version,
                detail="feature missing in production data",
            )
            continue
        if ref[name].dtype == object or str(ref[name].dtype) == "string":
            psi, statistic, pvalue = psi_categorical(ref[name], current[name]), None, None
            is_drift = psi > limits.psi_max
        else:
            psi = psi_numeric(ref[name].to_numpy(float), current[name].to_numpy(float))
            statistic, pvalue = ks(ref[name].to_numpy(float), current[name].to_numpy(float))
            # With thousands of rows any tiny shift is "significant"; drift needs both.
            is_drift = pvalue < limits.ks_pvalue and psi > limits.psi_max
        if is_drift:
            drifted.append(name)
        result.row("psi", psi, limits.psi_max, breached=is_drift, feature=name, version=version)
        if statistic is not None:
            result.row("ks_statistic", statistic, feature=name, version=version)
            result.row("ks_pvalue", pvalue, limits.ks_pvalue, feature=name, version=version)
    share = len(drifted) / max(len(features) - len(missing), 1)
    breached = share > limits.max_drifted_share or bool(missing)
    result.row(
        "drifted_share",
        share,
        limits.max_drifted_share,
        breached=breached,
        version=version,
        detail=", ".join(drifted),
    )
    result.summary.update(
        drifted_features=drifted, drifted_share=round(share, 3), rows=len(current), missing=missing
    )
    if missing:
        result.summary["detail"] = f"features missing in production data: {missing}"
    result.status = "breached" if breached else "ok"
    return result


def prediction_drift(settings: Settings, config: ModelConfig, day: dt.date) -> MonitorResult:
    limits = config.monitoring
    version = champion_version(settings, config)
    ref = reference(settings, config, version)
    rows = _predictions(settings, config, day)
    result = MonitorResult("prediction_drift", day, "ok", {"reference_version": version})
    if rows.empty:
        result.status = "no_data"
        result.row("rows", 0, detail=f"no predictions on {day}")
        return result
    psi = psi_numeric(ref["__score"].to_numpy(), rows["score"].to_numpy())
    statistic, _ = ks(ref["__score"].to_numpy(), rows["score"].to_numpy())
    breached = psi > limits.prediction_psi_max
    result.row("score_psi", psi, limits.prediction_psi_max, breached=breached, version=version)
    result.row("score_ks_statistic", statistic, version=version)
    result.row("mean_score", float(rows["score"].mean()), version=version)
    result.row("reference_mean_score", float(ref["__score"].mean()), version=version)
    result.row("positive_rate", float(rows["prediction"].mean()), version=version)
    result.summary.update(score_psi=round(psi, 4), mean_score=round(float(rows["score"].mean()), 4))
    result.status = "breached" if breached else "ok"
    return result


def data_quality(
    settings: Settings, config: ModelConfig, store: FeatureStore, day: dt.date
) -> MonitorResult:
    from mlops_assets.serving.batch import offline_features

    limits = config.monitoring
    result = MonitorResult("data_quality", day, "ok", {})
    rows = _predictions(settings, config, day)
    counts = _daily_counts(settings, config, day - dt.timedelta(days=7), day - dt.timedelta(days=1))
    trailing = [n for n in counts.values() if n > 0]
    baseline = float(np.median(trailing)) if trailing else None
    breaches = []
    result.row("rows_scored", len(rows), limits.min_rows, breached=len(rows) < limits.min_rows)
    if len(rows) < limits.min_rows:
        breaches.append(f"{len(rows)} rows scored (minimum {limits.min_rows})")
    if baseline:
        change = abs(len(rows) - baseline) / baseline
        bad = change > limits.max_volume_change
        result.row("volume_change_vs_trailing_week", change, limits.max_volume_change, breached=bad)
        if bad:
            breaches.append(f"volume {len(rows)} vs trailing median {baseline:.0f}")
    as_of = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    current = offline_features(store, config.feature_service, as_of)
    service = store.get_feature_service(config.feature_service)
    expected = [f.name for p in service.feature_view_projections for f in p.features]
    for name in expected:
        if name not in current.columns:
            result.row(
                "null_share",
                1.0,
                limits.max_null_share,
                breached=True,
                feature=name,
                detail="feature missing in production data",
            )
            breaches.append(f"{name} missing")
            continue
        share = float(current[name].isna().mean()) if len(current) else 0.0
        bad = share > limits.max_null_share
        result.row("null_share", share, limits.max_null_share, breached=bad, feature=name)
        if bad:
            breaches.append(f"{name} null share {share:.2%}")
    result.summary.update(rows_scored=len(rows), trailing_median=baseline, breaches=breaches)
    result.status = "breached" if breaches else "ok"
    return result


def summary_metadata(result: MonitorResult) -> dict[str, Any]:
    return {
        "status": result.status,
        **{
            k: (json.dumps(v) if isinstance(v, list | dict) else v)
            for k, v in result.summary.items()
        },
    }
