"""The fixtured lake of the SQL conformance suite: small but realistic Iceberg tables (daily
predictions with actuals, monitoring, timeline, online inference log) written through the product's
own helpers."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.model_config import model_configs
from mlops_assets.settings import PROJECT_ROOT

CONFIG = model_configs()["churn"]
FIRST_DAY = dt.date(2025, 3, 1)
DAYS = [FIRST_DAY + dt.timedelta(days=i) for i in range(10)]
LABELLED = DAYS[:6]  # the later days are still inside their churn window: actual is NULL
RUNS = {  # scoring runs (scored_at): the first six days, then a replay of the last four
    **{d: dt.datetime(2025, 3, 8, 3, 0, tzinfo=dt.UTC) for d in DAYS[:6]},
    **{d: dt.datetime(2025, 3, 12, 3, 0, 30, tzinfo=dt.UTC) for d in DAYS[6:]},
}
MONITOR_DAYS = [DAYS[0] + dt.timedelta(days=31 + i) for i in range(20)]
ANALYTICS = PROJECT_ROOT / "analytics"


class _StubModel:
    """A deterministic scorer on the feature frame (the scoring path needs predict_proba)."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        z = (
            0.9 * np.sin(X["noise"].to_numpy() * 12.9898 + self.shift)
            + 0.6 * X["open_ticket_count"].to_numpy()
            - X["spend_30d_usd"].fillna(50).to_numpy() / 80
        )
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


def _predictions(cat) -> None:
    from mlops_assets.lakehouse.tables import PREDICTIONS
    from mlops_assets.serving.batch import score, write_days

    rng = np.random.default_rng(11)
    tables = []
    for i, day in enumerate(DAYS):
        ids = np.sort(rng.choice(np.arange(1, 1400), size=380 + 7 * i, replace=False))
        spend = rng.gamma(2.0, 30.0, len(ids)).round(2)
        spend[rng.random(len(ids)) < 0.05] = np.nan
        features = pd.DataFrame(
            {
                "customer_id": ids,
                "plan": rng.choice(["free", "basic", "premium"], len(ids), p=[0.5, 0.3, 0.2]),
                "segment": rng.choice(["new", "loyal", "at_risk"], len(ids), p=[0.2, 0.6, 0.2]),
                "open_ticket_count": rng.poisson(0.4, len(ids)),
                "spend_30d_usd": spend,
                "noise": rng.normal(0, 1, len(ids)),
            }
        )
        challenger = (_StubModel(1.0), "4", 20) if day >= DAYS[3] else None
        tables.append(score(CONFIG, _StubModel(0.0), "3", features, day, RUNS[day], challenger))
    rows = pa.concat_tables(tables).to_pandas()
    # The delayed actuals, as predictions/churn/actuals fills them: churned drawn from the score.
    labelled = rows["prediction_date"].isin(LABELLED)
    churned = (rng.random(len(rows)) < rows["score"]).astype("int32")
    rows["actual"] = pd.Series(churned, dtype="Int32").where(labelled)
    known = pd.to_datetime(rows["prediction_timestamp"], utc=True) + pd.Timedelta(days=30)
    rows["actual_timestamp"] = known.where(labelled)
    schema = PREDICTIONS.schema
    table = PREDICTIONS.open(cat, CONFIG.name)
    write_days(table, DAYS, pa.Table.from_pandas(rows, schema=schema, preserve_index=False))


FRAUD = model_configs()["fraud"]


class _StubFraudModel:
    """Scores orders from their risk signals; carries its decision threshold as a trained one."""

    decision_threshold_ = 0.3

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        z = -3.5 + 2.5 * X["ship_country_mismatch"].to_numpy() + X["noise"].to_numpy()
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


def _fraud_predictions(cat) -> None:
    """Daily fraud predictions of orders (keyed by order_id and customer_id); the labelled days'
    actuals are chargebacks drawn from the score, the later days still wait for their window."""
    from mlops_assets.serving.batch import predictions_table, score, write_days

    rng = np.random.default_rng(13)
    tables = []
    for i, day in enumerate(DAYS):
        n = 150 + 11 * i
        features = pd.DataFrame(
            {
                "order_id": 1_000_000 * (i + 1) + np.arange(n),
                "customer_id": rng.integers(1, 1400, n),
                "ship_country_mismatch": (rng.random(n) < 0.1).astype("int64"),
                "customer_orders_prev_24h": rng.poisson(0.3, n),
                "noise": rng.normal(0, 1, n),
            }
        )
        tables.append(score(FRAUD, _StubFraudModel(), "2", features, day, RUNS[day]))
    rows = pa.concat_tables(tables).to_pandas()
    labelled = rows["prediction_date"].isin(LABELLED)
    fraud = (rng.random(len(rows)) < rows["score"]).astype("int32")
    rows["actual"] = pd.Series(fraud, dtype="Int32").where(labelled)
    known = pd.to_datetime(rows["prediction_timestamp"], utc=True) + pd.Timedelta(days=60)
    rows["actual_timestamp"] = known.where(labelled)
    keyed = predictions_table(FRAUD)
    table = keyed.open(cat, FRAUD.name)
    write_days(table, DAYS, pa.Table.from_pandas(rows, schema=keyed.schema, preserve_index=False))


def _monitoring(cat) -> None:
    from mlops_assets.lakehouse.tables import MONITORING
    from mlops_assets.monitoring.results import MonitorResult, write_result

    schema = MONITORING.schema

    rng = np.random.default_rng(12)
    features = ["spend_30d_usd", "order_count_30d", "plan", "open_ticket_count", "tenure_days"]
    results = []
    for i, day in enumerate(MONITOR_DAYS):
        drift = i >= 12
        perf = MonitorResult("performance", day, "ok", {})
        for version in (None, "3", "4"):
            auc = 0.82 - 0.1 * drift + rng.normal(0, 0.01)
            perf.row("labelled_rows", float(rng.integers(300, 500)), version=version)
            perf.row("roc_auc", auc, 0.75, breached=auc < 0.75, version=version)
            perf.row("ece", abs(rng.normal(0.04, 0.02)), 0.1, version=version)
        perf.status = "breached" if drift else "ok"
        fd = MonitorResult("feature_drift", day, "breached" if drift else "ok", {})
        for name in features:
            psi = abs(rng.normal(0.3 if drift else 0.05, 0.03))
            fd.row("psi", psi, 0.2, breached=psi > 0.2, feature=name, version="3")
            if name != "plan":
                fd.row("ks_pvalue", rng.random() / (100 if drift else 1), feature=name, version="3")
        fd.row("drifted_share", 0.8 if drift else 0.0, 0.2, breached=drift, version="3")
        pdrift = MonitorResult("prediction_drift", day, "ok", {})
        pdrift.row("score_psi", abs(rng.normal(0.05, 0.02)), 0.2, version="3")
        pdrift.row("mean_score", None if i == 5 else rng.uniform(0.3, 0.5), version="3")
        dq = MonitorResult("data_quality", day, "breached" if i == 7 else "ok", {})
        dq.row("rows_scored", float(rng.integers(380, 460)), 200, breached=i == 7)
        for name in features:
            dq.row("null_share", rng.uniform(0, 0.06), 0.05, feature=name)
        results += [perf, fd, pdrift, dq]
    # Most days in one commit (the rows write_result would write), the last day through it.
    frames = []
    for result in results[:-4]:
        status = {
            "metric": "status",
            "feature": None,
            "model_version": None,
            "value": float(result.breached),
            "threshold": None,
            "breached": result.breached,
            "detail": result.status,
        }
        frames.append(
            pd.DataFrame([status, *result.rows]).assign(
                day=result.day,
                monitor=result.monitor,
                computed_at=dt.datetime(2025, 4, 30, tzinfo=dt.UTC)
                + dt.timedelta(minutes=len(frames)),
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    MONITORING.open(cat, CONFIG.name).append(
        pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    )
    for result in results[-4:]:
        write_result(cat, CONFIG, result)


def _timeline(cat) -> None:
    from mlops_assets.demo.timeline import Timeline, write_timeline

    start = dt.datetime(2025, 5, 2, 9, 0, tzinfo=dt.UTC)
    events = [
        ("lakehouse_built", "240 landing days, dbt, features", "run-a", "", DAYS[-1]),
        ("trained_and_deployed", "first champion, serving 100%", "run-b", "3", DAYS[0]),
        ("scored", f"{DAYS[0]} .. {DAYS[-1]}", "run-c", "3", DAYS[-1]),
        ("monitored", "degraded day runs: {'2025-04-13': 8}", "run-d", "3", MONITOR_DAYS[12]),
        ("retraining_launched", "feature_drift failed on 3 consecutive days", "run-e", "", None),
        ("canary_deployed", "v4 at 20%", "run-f", "4", None),
        ("canary_promote", '{"challenger_roc_auc": 0.83}', "run-g", "4", None),
        ("serving", '{"4": 100}', "", "4", None),
    ]
    timeline = Timeline(
        events=[
            {
                "occurred_at": start + dt.timedelta(seconds=37 * i),
                "data_day": day,
                "event": event,
                "detail": detail,
                "run_id": run_id,
                "model_version": version,
                "model": "" if event == "lakehouse_built" else CONFIG.name,
            }
            for i, (event, detail, run_id, version, day) in enumerate(events)
        ]
    )
    write_timeline(cat, timeline)


def _online(cat) -> None:
    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.serving.inference_log import append_with_retry

    schema = INFERENCE_LOG.schema

    rng = np.random.default_rng(13)
    n = 1500
    start = pd.Timestamp("2025-03-09T00:00:00Z")
    requested = start + pd.to_timedelta(np.sort(rng.uniform(0, 3 * 86400, n)), unit="s")
    requested = requested.floor("us")
    scores = rng.beta(2, 5, n)
    arms = np.where(rng.random(n) < 0.2, "challenger", "champion")
    features = []
    for _ in range(n):
        values = {
            "plan": str(rng.choice(["free", "basic", "premium"])),
            "order_count_30d": int(rng.poisson(2)),
            "open_ticket_count": None if rng.random() < 0.1 else int(rng.poisson(0.3)),
            "spend_30d_usd": round(float(rng.gamma(2.0, 30.0)), 2),
            "segment": str(rng.choice(["new", "loyal"])),
        }
        features.append(json.dumps(values))
    columns = {
        "request_id": [f"req-{i:05d}" for i in range(n)],
        "customer_id": rng.integers(1, 1400, n),
        "features": features,
        "score": scores,
        "prediction": (scores >= 0.5).astype("int32"),
        "risk_band": np.select(
            [scores >= 0.85, scores >= 0.6, scores >= 0.3], ["critical", "high", "medium"], "low"
        ),
        "rule": np.where(rng.random(n) < 0.1, "override:new_customer_watch", "score"),
        "model_version": np.where(arms == "challenger", "4", "3"),
        "arm": arms,
        "latency_ms": rng.lognormal(1.0, 0.3, n),
        "requested_at": requested.to_pydatetime(),
        "request_date": [t.date() for t in requested],
    }
    columns["model_name"] = [CONFIG.name] * n
    columns["entity_keys"] = [json.dumps({"customer_id": int(c)}) for c in columns["customer_id"]]
    if "prediction_timestamp" in schema.names:  # the as-of time: request_ts, else arrival
        given = rng.random(n) < 0.3
        valid_for = requested.floor("h").where(given, requested)
        columns["prediction_timestamp"] = valid_for.to_pydatetime()
    rows = pa.table({name: columns[name] for name in schema.names}, schema=schema)
    append_with_retry(INFERENCE_LOG.open(cat, CONFIG.name), rows)
