"""Analyst SQL conformance: Trino queries run by the embedded engine (sqlglot -> DuckDB over the
Iceberg tables) give the answer Trino defines, computed independently with pandas over a pyiceberg
scan of the same tables; what the translation cannot reproduce exactly is refused by name.

The tables are small but realistic: the daily predictions (with actuals, two model versions, days
still waiting for labels), the monitoring table (NULL feature / model_version), the timeline and the
online inference log, written through the product's own helpers. Values compare to 1e-9 relative
(floats) or exactly; approximate Trino functions within Trino's documented error (approx_distinct:
2.3 % standard error, approx_percentile: 1 % rank error). Result dtypes follow the Trino types:
bigint -> int64 (Int64 with NULLs), integer -> int32, double -> float64, varchar -> object,
boolean -> bool, date -> datetime64, timestamp with time zone -> datetime64 UTC, arrays -> lists.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_assets.lakehouse.sql import QueryError, run_sql
from mlops_assets.model_config import model_configs
from mlops_assets.settings import PROJECT_ROOT
from tests.conftest import scratch_world

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


def _predictions(settings) -> None:
    from mlops_assets.lakehouse.catalog import catalog
    from mlops_assets.serving.batch import ensure_table, score, write_days

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
    from mlops_assets.serving.batch import SCHEMA

    table = ensure_table(catalog(settings), CONFIG)
    write_days(table, DAYS, pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False))


def _monitoring(settings) -> None:
    from mlops_assets.lakehouse.catalog import catalog
    from mlops_assets.monitoring.monitors import (
        SCHEMA,
        MonitorResult,
        ensure_table,
        write_result,
    )

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
    ensure_table(catalog(settings), CONFIG).append(
        pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
    )
    for result in results[-4:]:
        write_result(settings, CONFIG, result)


def _timeline(settings) -> None:
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
                "at": start + dt.timedelta(seconds=37 * i),
                "data_day": day,
                "event": event,
                "detail": detail,
                "run_id": run_id,
                "model_version": version,
            }
            for i, (event, detail, run_id, version, day) in enumerate(events)
        ]
    )
    write_timeline(settings, timeline)


def _online(settings) -> None:
    from mlops_assets.lakehouse.catalog import catalog
    from mlops_assets.serving.inference_log import SCHEMA, append_with_retry, ensure_table

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
    if "prediction_timestamp" in SCHEMA.names:  # the as-of time: request_ts, else arrival
        given = rng.random(n) < 0.3
        valid_for = requested.floor("h").where(given, requested)
        columns["prediction_timestamp"] = valid_for.to_pydatetime()
    rows = pa.table({name: columns[name] for name in SCHEMA.names}, schema=SCHEMA)
    append_with_retry(ensure_table(catalog(settings), "churn"), rows)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("sql")
    with scratch_world(root) as settings:
        _predictions(settings)
        _monitoring(settings)
        _timeline(settings)
        _online(settings)
        yield settings


@pytest.fixture(scope="module")
def data(lake) -> dict[str, pd.DataFrame]:
    """Every table as pandas reads it from a pyiceberg scan: the independent side."""
    from mlops_assets.lakehouse.catalog import catalog

    cat = catalog(lake)
    names = {
        "predictions": "predictions.churn_daily",
        "online": "predictions.churn_online",
        "monitoring": "monitoring.churn_daily",
        "timeline": "monitoring.timeline",
    }
    return {key: cat.load_table(name).scan().to_pandas() for key, name in names.items()}


# -- the expected side ---------------------------------------------------------------------------

DTYPES = {
    "bigint": ("int64", "Int64"),
    "integer": ("int32", "Int32"),
    "double": ("float64", "float64"),
    "boolean": ("bool", "boolean"),
    "varchar": ("object", "object"),
    "date": ("datetime64[us]", "datetime64[us]"),
    "timestamp(6) with time zone": ("datetime64[us, UTC]", "datetime64[us, UTC]"),
    "array": ("object", "object"),
    "decimal": ("float64", "float64"),  # DuckDB's decimals arrive as float64
    "interval": ("timedelta64[us]", "timedelta64[us]"),
}


def _dtype(trino: str, column: pd.Series) -> str:
    base = trino.split("(")[0] if trino.startswith(("array", "decimal")) else trino
    plain, nullable = DTYPES[base]
    return nullable if column.isna().any() else plain


@dataclass
class Case:
    sql: str
    expected: Callable[[dict[str, pd.DataFrame]], pd.DataFrame]
    types: list[str]
    # column -> check(actual column, expected column) for approximate Trino functions
    approx: dict[str, Callable[[pd.Series, pd.Series], None]] = field(default_factory=dict)
    ordered: bool = True


def within_relative(bound: float) -> Callable[[pd.Series, pd.Series], None]:
    def check(actual: pd.Series, expected: pd.Series) -> None:
        error = np.abs(actual.to_numpy(float) - expected.to_numpy(float)) / expected.to_numpy(float)
        assert (error <= bound).all(), (actual.tolist(), expected.tolist())

    return check


def within_rank(p: float, bound: float = 0.01) -> Callable[[pd.Series, pd.Series], None]:
    """The value's rank among its group's values (the expected column holds them) is p, within
    Trino's rank error: some rank in [#values < v, #values <= v] / n is within p +- bound."""

    def check(actual: pd.Series, expected: pd.Series) -> None:
        for value, values in zip(actual, expected, strict=True):
            values = np.asarray(values, dtype=float)
            below = (values < value).mean()
            at_most = (values <= value).mean()
            assert value in values, value  # quantile_disc answers with one of the values
            assert below - bound <= p <= at_most + bound, (value, p, below, at_most)

    return check


def within_ranks(ps: list[float], bound: float = 0.01) -> Callable[[pd.Series, pd.Series], None]:
    """approx_percentile(x, ARRAY[p, ...]): each element within its rank error."""

    def check(actual: pd.Series, expected: pd.Series) -> None:
        for answers, values in zip(actual, expected, strict=True):
            assert len(answers) == len(ps)
            for p, answer in zip(ps, answers, strict=True):
                within_rank(p, bound)(pd.Series([answer]), pd.Series([values]))

    return check


def trino_round(x, digits: int = 0):
    """Trino's round(double, d): half away from zero."""
    factor = 10.0**digits
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.floor(np.abs(x) * factor + 0.5) / factor


def java_f(x: float, digits: int) -> str:
    """Java's %.nf: half-up on the shortest decimal representation of the double."""
    from decimal import ROUND_HALF_UP, Decimal

    d = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = f"{abs(d):f}"
    return ("-" if x < 0 else "") + text


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v).reset_index(drop=True) for k, v in columns.items()})


def utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def days(series: pd.Series) -> pd.Series:
    return pd.to_datetime(pd.Series(series)).astype("datetime64[us]")


def week_start(series: pd.Series) -> pd.Series:
    dates = pd.to_datetime(pd.Series(series))
    return (dates - pd.to_timedelta(dates.dt.weekday, unit="D")).astype("datetime64[us]")


def _p(d):
    return d["predictions"]


def _o(d):
    return d["online"]


def _m(d):
    return d["monitoring"]


# -- the queries ---------------------------------------------------------------------------------

P = "iceberg.predictions.churn_daily"
OL = "iceberg.predictions.churn_online"
M = "iceberg.monitoring.churn_daily"
T = "iceberg.monitoring.timeline"


def _daily_volume(d):
    g = _p(d).groupby("prediction_date")
    return frame(
        prediction_date=days(g.size().index),
        predictions=g.size().to_numpy(),
        mean_score=trino_round(g["score"].mean().to_numpy(), 6),
        predicted_churn_rate=trino_round(g["prediction"].mean().to_numpy(), 6),
    )


def _score_distribution(d):
    p = _p(d).assign(decile=lambda f: np.floor(f["score"] * 10).astype(int))
    g = p.groupby(["model_version", "decile"]).size().reset_index(name="n")
    return frame(
        model_version=g["model_version"],
        score_decile=g["decile"].astype("int32"),
        predictions=g["n"],
    )


def _risk_bands(d):
    p = _p(d).assign(raised=lambda f: f["rule"] != "score")
    g = p.groupby(["prediction_date", "risk_band"]).agg(n=("score", "size"), r=("raised", "sum"))
    g = g.reset_index()
    return frame(
        prediction_date=days(g["prediction_date"]),
        risk_band=g["risk_band"],
        customers=g["n"],
        raised_by_override=g["r"].astype("int64"),
    )


def _accuracy(d):
    p = _p(d)
    p = p[p["actual"].notna()]
    rows = []
    for (day, version), g in p.groupby(["prediction_date", "model_version"]):
        tp = ((g["prediction"] == 1) & (g["actual"] == 1)).sum()
        pp, ap = (g["prediction"] == 1).sum(), (g["actual"] == 1).sum()
        rows.append(
            {
                "prediction_date": day,
                "model_version": version,
                "labelled": len(g),
                "accuracy": trino_round((g["prediction"] == g["actual"]).mean(), 6),
                "precision": trino_round(tp / pp, 6) if pp else np.nan,
                "recall": trino_round(tp / ap, 6) if ap else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    out["prediction_date"] = days(out["prediction_date"])
    return out.astype({"accuracy": float, "precision": float, "recall": float})


def _label_delay(d):
    p = _p(d)
    p = p[p["actual_timestamp"].notna()]
    delay = (utc(p["actual_timestamp"]) - utc(p["prediction_timestamp"])).dt.total_seconds()
    week = week_start(p["prediction_date"]).to_numpy()
    g = pd.DataFrame({"week": week, "delay": delay.to_numpy() / 86400}).groupby("week")
    return frame(
        week=days(g.size().index),
        labelled=g.size().to_numpy(),
        avg_label_delay_days=trino_round(g["delay"].mean().to_numpy(), 2),
        min_label_delay_days=g["delay"].min().to_numpy().astype("int64"),
        max_label_delay_days=g["delay"].max().to_numpy().astype("int64"),
    )


def _sql(name: str) -> str:
    return (ANALYTICS / name).read_text()


def _versions(d, fn):
    p = _p(d)
    return [(v, fn(g)) for v, g in p.groupby("model_version")]


CASES: dict[str, Case] = {
    # --- the analyst queries in analytics/ ---
    "analytics_daily_volume": Case(
        _sql("daily_volume.sql"), _daily_volume, ["date", "bigint", "double", "double"]
    ),
    "analytics_score_distribution": Case(
        _sql("score_distribution.sql"), _score_distribution, ["varchar", "integer", "bigint"]
    ),
    "analytics_risk_bands": Case(
        _sql("risk_bands.sql"), _risk_bands, ["date", "varchar", "bigint", "bigint"]
    ),
    "analytics_accuracy": Case(
        _sql("accuracy.sql"),
        _accuracy,
        ["date", "varchar", "bigint", "double", "double", "double"],
    ),
    "analytics_label_delay": Case(
        _sql("label_delay.sql"), _label_delay, ["date", "bigint", "double", "bigint", "bigint"]
    ),
    # --- aggregates ---
    "count_count_if_sum": Case(
        f"SELECT model_version, count(*) AS n, count(actual) AS labelled, "
        f"count(DISTINCT customer_id) AS customers, count_if(prediction = 1) AS positives, "
        f"sum(prediction) AS positive_sum, sum(actual) AS churned FROM {P} "
        "GROUP BY model_version ORDER BY model_version",
        lambda d: frame(
            model_version=[v for v, _ in _versions(d, len)],
            n=[len(g) for _, g in _p(d).groupby("model_version")],
            labelled=[g["actual"].notna().sum() for _, g in _p(d).groupby("model_version")],
            customers=[g["customer_id"].nunique() for _, g in _p(d).groupby("model_version")],
            positives=[(g["prediction"] == 1).sum() for _, g in _p(d).groupby("model_version")],
            positive_sum=[g["prediction"].sum() for _, g in _p(d).groupby("model_version")],
            churned=[int(g["actual"].sum()) for _, g in _p(d).groupby("model_version")],
        ),
        ["varchar", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint"],
    ),
    "approx_distinct": Case(
        f"SELECT prediction_date, approx_distinct(customer_id) AS customers, "
        f"approx_distinct(risk_band) AS bands FROM {P} GROUP BY prediction_date "
        "ORDER BY prediction_date",
        lambda d: frame(
            prediction_date=days(sorted(_p(d)["prediction_date"].unique())),
            customers=_p(d).groupby("prediction_date")["customer_id"].nunique().to_numpy(),
            bands=_p(d).groupby("prediction_date")["risk_band"].nunique().to_numpy(),
        ),
        ["date", "bigint", "bigint"],
        approx={"customers": within_relative(0.023), "bands": within_relative(0.023)},
    ),
    "approx_percentile": Case(
        f"SELECT model_version, approx_percentile(score, 0.5) AS p50, "
        f"approx_percentile(score, 0.9) AS p90, "
        f"approx_percentile(customer_id, ARRAY[0.1, 0.5, 0.99]) AS ids FROM {P} "
        "GROUP BY model_version "
        "ORDER BY model_version",
        lambda d: frame(
            model_version=sorted(_p(d)["model_version"].unique()),
            p50=[g["score"].tolist() for _, g in _p(d).groupby("model_version")],
            p90=[g["score"].tolist() for _, g in _p(d).groupby("model_version")],
            ids=[g["customer_id"].tolist() for _, g in _p(d).groupby("model_version")],
        ),
        ["varchar", "double", "double", "array(bigint)"],
        approx={
            "p50": within_rank(0.5),
            "p90": within_rank(0.9),
            "ids": within_ranks([0.1, 0.5, 0.99]),
        },
    ),
    "approx_percentile_integer": Case(
        f"SELECT approx_percentile(customer_id, 0.25) AS q1, "
        f"approx_percentile(prediction_date_n, 0.75) AS q3, "
        f"approx_percentile(prediction, 0.5) AS integer_median FROM "
        f"(SELECT customer_id, prediction, day_of_month(prediction_date) AS prediction_date_n "
        f"FROM {P})",
        lambda d: frame(
            q1=[_p(d)["customer_id"].tolist()],
            q3=[pd.to_datetime(_p(d)["prediction_date"]).dt.day.tolist()],
            integer_median=[_p(d)["prediction"].tolist()],
        ),
        ["bigint", "bigint", "bigint"],  # an integer's percentile is a bigint in Trino
        approx={
            "q1": within_rank(0.25),
            "q3": within_rank(0.75),
            "integer_median": within_rank(0.5),
        },
    ),
    "spread_aggregates": Case(
        f"SELECT risk_band, stddev(score) AS sd, stddev_samp(score) AS sd_samp, "
        f"stddev_pop(score) AS sd_pop, variance(score) AS var, var_pop(score) AS var_pop, "
        f"corr(score, CAST(prediction AS double)) AS r FROM {P} WHERE risk_band <> 'critical' "
        "GROUP BY risk_band ORDER BY risk_band",
        lambda d: (
            lambda g: frame(
                risk_band=list(g.groups),
                sd=g["score"].std().to_numpy(),
                sd_samp=g["score"].std().to_numpy(),
                sd_pop=g["score"].std(ddof=0).to_numpy(),
                var=g["score"].var().to_numpy(),
                var_pop=g["score"].var(ddof=0).to_numpy(),
                r=[np.corrcoef(x["score"], x["prediction"])[0, 1] for _, x in g],
            )
        )(_p(d)[_p(d)["risk_band"] != "critical"].groupby("risk_band")),
        ["varchar", "double", "double", "double", "double", "double", "double"],
    ),
    "min_max_bool_aggregates": Case(
        f"SELECT prediction_date, min(score) AS lo, max(score) AS hi, "
        f"min(scored_at) AS first_scored, max(actual_timestamp) AS known_at, "
        f"bool_and(score >= 0) AS all_valid, bool_or(actual = 1) AS any_churned FROM {P} "
        "GROUP BY prediction_date ORDER BY prediction_date",
        lambda d: (
            lambda g: frame(
                prediction_date=days(list(g.groups)),
                lo=g["score"].min().to_numpy(),
                hi=g["score"].max().to_numpy(),
                first_scored=utc(g["scored_at"].min().to_numpy()),
                known_at=utc(g["actual_timestamp"].max().reset_index(drop=True)),
                all_valid=[True] * len(g),
                any_churned=pd.array(
                    [(x["actual"] == 1).any() if x["actual"].notna().any() else None for _, x in g],
                    dtype="boolean",
                ),
            )
        )(_p(d).groupby("prediction_date")),
        [
            "date",
            "double",
            "double",
            "timestamp(6) with time zone",
            "timestamp(6) with time zone",
            "boolean",
            "boolean",
        ],
    ),
    "max_by_min_by_array_agg": Case(
        f"SELECT prediction_date, max_by(customer_id, score) AS riskiest, "
        f"min_by(customer_id, score) AS safest, max_by(nullif(prediction, 1), score) AS none, "
        f"array_agg(customer_id ORDER BY customer_id) AS critical_premium FROM {P} "
        "WHERE prediction_date <= DATE '2025-03-03' GROUP BY prediction_date "
        "ORDER BY prediction_date",
        lambda d: (
            lambda p: frame(
                prediction_date=days(sorted(p["prediction_date"].unique())),
                riskiest=[
                    g.loc[g["score"].idxmax(), "customer_id"]
                    for _, g in p.groupby("prediction_date")
                ],
                safest=[
                    g.loc[g["score"].idxmin(), "customer_id"]
                    for _, g in p.groupby("prediction_date")
                ],
                none=pd.array([None] * p["prediction_date"].nunique(), dtype="Int32"),
                critical_premium=[
                    sorted(g["customer_id"].tolist()) for _, g in p.groupby("prediction_date")
                ],
            )
        )(_p(d)[pd.to_datetime(_p(d)["prediction_date"]) <= "2025-03-03"]),
        ["date", "bigint", "bigint", "integer", "array(bigint)"],
    ),
    "aggregate_filter_having": Case(
        f"SELECT risk_band, count(*) FILTER (WHERE actual = 1) AS churned, "
        f"count(*) FILTER (WHERE actual = 0) AS stayed FROM {P} GROUP BY risk_band "
        "HAVING count(*) > 100 ORDER BY churned DESC, risk_band",
        lambda d: (
            lambda t: (
                t[t["n"] > 100]
                .sort_values(["churned", "risk_band"], ascending=[False, True])
                .drop(columns="n")
                .reset_index(drop=True)
            )
        )(
            _p(d)
            .groupby("risk_band")
            .agg(
                churned=("actual", lambda a: int((a == 1).sum())),
                stayed=("actual", lambda a: int((a == 0).sum())),
                n=("actual", "size"),
            )
            .reset_index()
        ),
        ["varchar", "bigint", "bigint"],
    ),
    # --- window functions ---
    "row_number_top_per_day": Case(
        f"SELECT prediction_date, customer_id, score, rn FROM (SELECT prediction_date, "
        f"customer_id, score, row_number() OVER (PARTITION BY prediction_date ORDER BY score DESC) "
        f"AS rn FROM {P}) WHERE rn <= 3 ORDER BY prediction_date, rn",
        lambda d: (
            lambda p: frame(
                prediction_date=days(p["prediction_date"]),
                customer_id=p["customer_id"],
                score=p["score"],
                rn=p["rn"].astype("int64"),
            )
        )(
            _p(d)
            .sort_values(["prediction_date", "score"], ascending=[True, False])
            .assign(rn=lambda f: f.groupby("prediction_date").cumcount() + 1)
            .query("rn <= 3")
        ),
        ["date", "bigint", "double", "bigint"],
    ),
    "rank_dense_rank": Case(
        f"SELECT prediction_date, risk_band, count(*) AS n, "
        f"rank() OVER (PARTITION BY prediction_date ORDER BY count(*) DESC) AS r, "
        f"dense_rank() OVER (ORDER BY risk_band) AS band_rank FROM {P} "
        "GROUP BY prediction_date, risk_band ORDER BY prediction_date, r, risk_band",
        lambda d: (
            lambda g: (
                g.assign(
                    r=g.groupby("prediction_date")["n"]
                    .rank(method="min", ascending=False)
                    .astype("int64"),
                    band_rank=g["risk_band"].rank(method="dense").astype("int64"),
                )
                .sort_values(["prediction_date", "r", "risk_band"])
                .assign(prediction_date=lambda f: days(f["prediction_date"]).to_numpy())
                .reset_index(drop=True)
            )
        )(_p(d).groupby(["prediction_date", "risk_band"]).size().reset_index(name="n")),
        ["date", "varchar", "bigint", "bigint", "bigint"],
    ),
    "lag_lead_running_total": Case(
        f"WITH daily AS (SELECT prediction_date, count(*) AS n FROM {P} GROUP BY prediction_date) "
        "SELECT prediction_date, n, lag(n) OVER (ORDER BY prediction_date) AS previous, "
        "lead(n, 1, 0) OVER (ORDER BY prediction_date) AS next, "
        "sum(n) OVER (ORDER BY prediction_date ROWS UNBOUNDED PRECEDING) AS running "
        "FROM daily ORDER BY prediction_date",
        lambda d: (
            lambda n: frame(
                prediction_date=days(n.index),
                n=n.to_numpy(),
                previous=pd.array([None, *n.to_numpy()[:-1]], dtype="Int64"),
                next=[*n.to_numpy()[1:], 0],
                running=n.cumsum().to_numpy(),
            )
        )(_p(d).groupby("prediction_date").size()),
        ["date", "bigint", "bigint", "bigint", "bigint"],
    ),
    "ntile_percent_rank_cume_dist": Case(
        f"SELECT customer_id, ntile(4) OVER (ORDER BY score) AS quartile, "
        f"percent_rank() OVER (ORDER BY score) AS pr, cume_dist() OVER (ORDER BY score) AS cd "
        f"FROM {P} WHERE prediction_date = DATE '2025-03-02' ORDER BY score",
        lambda d: (
            lambda p: frame(
                customer_id=p["customer_id"],
                quartile=_ntile(len(p), 4),
                pr=np.arange(len(p)) / (len(p) - 1),
                cd=(np.arange(len(p)) + 1) / len(p),
            )
        )(_p(d)[_p(d)["prediction_date"] == dt.date(2025, 3, 2)].sort_values("score")),
        ["bigint", "bigint", "double", "double"],
    ),
    "first_last_value_moving_average": Case(
        f"WITH daily AS (SELECT model_version, prediction_date, avg(score) AS mean_score FROM {P} "
        "GROUP BY model_version, prediction_date) SELECT model_version, prediction_date, "
        "avg(mean_score) OVER (PARTITION BY model_version ORDER BY prediction_date "
        "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving, "
        "first_value(mean_score) OVER (PARTITION BY model_version ORDER BY prediction_date) AS first, "
        "last_value(mean_score) OVER (PARTITION BY model_version ORDER BY prediction_date "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last "
        "FROM daily ORDER BY model_version, prediction_date",
        lambda d: pd.concat(
            [
                frame(
                    model_version=[v] * len(s),
                    prediction_date=days(s.index),
                    moving=s.rolling(3, min_periods=1).mean().to_numpy(),
                    first=[s.iloc[0]] * len(s),
                    last=[s.iloc[-1]] * len(s),
                )
                for v, g in _p(d).groupby("model_version")
                for s in [g.groupby("prediction_date")["score"].mean()]
            ],
            ignore_index=True,
        ),
        ["varchar", "date", "double", "double", "double"],
    ),
}


def _ntile(n: int, buckets: int) -> np.ndarray:
    """SQL ntile: the first n % buckets buckets get one row more."""
    sizes = [n // buckets + (1 if i < n % buckets else 0) for i in range(buckets)]
    return np.repeat(np.arange(1, buckets + 1), sizes).astype("int64")


# -- more queries: dates and times, format, UNNEST, joins, keywords, strings, casts, metadata -----


def _online_parts(d):
    o = _o(d).sort_values("request_id").head(200)
    t = utc(o["requested_at"])
    return frame(
        request_id=o["request_id"],
        y=t.dt.year.astype("int64"),
        q=t.dt.quarter.astype("int64"),
        m=t.dt.month.astype("int64"),
        w=t.dt.isocalendar().week.astype("int64"),
        d=t.dt.day.astype("int64"),
        dow=(t.dt.dayofweek + 1).astype("int64"),
        doy=t.dt.dayofyear.astype("int64"),
        h=t.dt.hour.astype("int64"),
        mi=t.dt.minute.astype("int64"),
        edow=(t.dt.dayofweek + 1).astype("int64"),
        s=t.dt.second.astype("int64"),
    )


def _date_arithmetic(d):
    g = _p(d).groupby("prediction_date")
    day = pd.to_datetime(pd.Series(list(g.groups)))
    return frame(
        prediction_date=days(day),
        due=days(day + pd.Timedelta(days=30)),
        next_week=days(day + pd.Timedelta(days=7)),
        next_month=days(day + pd.DateOffset(months=1)),
        refreshed=utc(g["scored_at"].max().to_numpy()) + pd.Timedelta(hours=6),
    )


def _date_diffs(d):
    g = _p(d).groupby("prediction_date")
    day = pd.to_datetime(pd.Series(list(g.groups)))
    april = pd.Timestamp("2025-04-01")
    as_of = utc(g["prediction_timestamp"].min().to_numpy())
    scored = utc(g["scored_at"].max().to_numpy())

    def whole(delta, unit):  # whole units elapsed, truncated toward zero (Trino's date_diff)
        return np.trunc(delta.dt.total_seconds() / unit).astype("int64")

    return frame(
        prediction_date=days(day),
        days_to_april=(april - day).dt.days.astype("int64"),
        weeks_to_april=((april - day).dt.days // 7).astype("int64"),
        hours_to_score=whole(pd.Series(scored - as_of), 3600),
        days_back=whole(pd.Series(as_of - scored), 86400),
    )


def _date_format(d):
    o = _o(d).sort_values("request_id").head(100)
    t = utc(o["requested_at"])
    return frame(
        request_id=o["request_id"],
        at_text=t.dt.strftime("%Y-%m-%d %H:%M:%S"),
        day_text=[f"{x:%A} {x.day} {x:%B %Y}" for x in pd.to_datetime(o["request_date"])],
        clock=t.dt.strftime("%I:%M %p, day %j"),
        epoch=t.map(lambda x: x.timestamp()),
        day=days(t.dt.date),
        day2=days(t.dt.date),
    )


def _format(d):
    p = _p(d)
    p = p[p["prediction_date"].isin([dt.date(2025, 3, 6), dt.date(2025, 3, 7)])]
    p = p[p["customer_id"] < 300].sort_values(["prediction_date", "customer_id"])
    return frame(
        customer_id=p["customer_id"],
        s3=[java_f(x, 3) for x in p["score"]],
        label=[f"{b}: {c}" for b, c in zip(p["risk_band"], p["customer_id"], strict=True)],
        padded=[
            f"{b:<8}|{java_f(s * 100, 2):>6}%"
            for b, s in zip(p["risk_band"], p["score"], strict=True)
        ],
        id5=[f"{c:05d}" for c in p["customer_id"]],
        tiny=[java_f(-s / 100, 1) for s in p["score"]],
        day=[str(x) for x in p["prediction_date"]],
        actual_text=["null" if pd.isna(a) else str(int(a)) for a in p["actual"]],
    )


def _format_aggregates(d):
    g = _p(d).groupby("risk_band")
    return frame(
        risk_band=list(g.groups),
        _col1=[f"{band}: {len(x)} customers, mean {java_f(x['score'].mean(), 4)}" for band, x in g],
    )


def _thresholds(d):
    score = _p(d)["score"]
    return frame(
        threshold=[0.3, 0.5, 0.7], above=[int((score >= t).sum()) for t in (0.3, 0.5, 0.7)]
    )


def _rule_parts(d):
    parts = _p(d)["rule"].str.split(":").explode()
    counts = parts.value_counts().sort_index()
    return frame(part=counts.index, n=counts.to_numpy())


def _arrays(d):
    rules = sorted(_p(d)["rule"].unique())
    split = [r.split(":") for r in rules]
    return frame(
        rule=rules,
        parts=[len(s) for s in split],
        name=[s[1] if len(s) > 1 else None for s in split],
        last=[s[-1] for s in split],
    )


def _cte_join(d):
    p = _p(d)
    p = p[p["actual"].notna()]
    volume = p.groupby(["prediction_date", "model_version"]).agg(
        predictions=("score", "size"), churn_rate=("actual", "mean")
    )
    volume = volume.reset_index()
    m = _m(d)
    auc = m[
        (m["monitor"] == "performance") & (m["metric"] == "roc_auc") & m["model_version"].notna()
    ]
    # Monitoring day D evaluates the predictions of D - 31.
    auc = auc.assign(prediction_date=[day - dt.timedelta(days=31) for day in auc["day"]])
    joined = volume.merge(
        auc[["prediction_date", "model_version", "value"]],
        on=["prediction_date", "model_version"],
        how="left",
    ).sort_values(["prediction_date", "model_version"])
    return frame(
        prediction_date=days(joined["prediction_date"]),
        model_version=joined["model_version"],
        predictions=joined["predictions"],
        churn_rate=joined["churn_rate"].astype(float),
        roc_auc=joined["value"],
    )


def _join_online(d):
    o, p = _o(d), _p(d)
    joined = o.merge(
        p, left_on=["customer_id", "request_date"], right_on=["customer_id", "prediction_date"]
    )
    g = joined.groupby("request_date")
    return frame(
        request_date=days(list(g.groups)),
        matched=g.size().to_numpy(),
        mean_gap=(g["score_x"].mean() - g["score_y"].mean()).to_numpy(),
    )


def _subqueries(d):
    o, p = _o(d), _p(d)
    churned = set(p.loc[p["actual"] == 1, "customer_id"])
    scored = set(zip(p["customer_id"], p["prediction_date"], strict=True))
    keep = o["customer_id"].isin(churned) & [
        (c, day) in scored for c, day in zip(o["customer_id"], o["request_date"], strict=True)
    ]
    counts = o[keep].groupby("arm").size()
    return frame(arm=counts.index, requests=counts.to_numpy())


def _union(d):
    batch = _p(d).groupby("prediction_date").size()
    online = _o(d).groupby("request_date").size()
    rows = [("batch", k, v) for k, v in batch.items()] + [
        ("online", k, v) for k, v in online.items()
    ]
    rows.sort(key=lambda r: (r[1], r[0]))
    return frame(
        source=[r[0] for r in rows], day=days([r[1] for r in rows]), n=[r[2] for r in rows]
    )


def _set_operations(d):
    online = set(_o(d)["customer_id"])
    p = _p(d)
    recent = set(p.loc[p["prediction_date"] >= dt.date(2025, 3, 9), "customer_id"])
    return frame(only_online=[len(online - recent)], both=[len(online & recent)])


def _keyword_columns(d):
    t = _timeline_sorted(d)
    return frame(at=utc(t["occurred_at"]), order=t["event"], detail=t["detail"])


def _timeline_sorted(d):
    return d["timeline"].sort_values("occurred_at").reset_index(drop=True)


def _readme_timeline(d):
    t = _timeline_sorted(d)
    return frame(
        occurred_at=utc(t["occurred_at"]),
        data_day=days(t["data_day"]),
        event=t["event"],
        detail=t["detail"],
        run_id=t["run_id"],
        model_version=t["model_version"],
    )


def _overall_auc(d):
    m = _m(d)
    rows = m[
        (m["monitor"] == "performance") & (m["metric"] == "roc_auc") & m["model_version"].isna()
    ].sort_values("day")
    return frame(
        day=days(rows["day"]),
        roc_auc=rows["value"],
        threshold=rows["threshold"],
        breached=rows["breached"],
    )


def _null_semantics(d):
    g = _m(d).groupby("monitor")
    return frame(
        monitor=list(g.groups),
        model_level=[int(x["feature"].isna().sum()) for _, x in g],
        all_versions=[int(x["model_version"].isna().sum()) for _, x in g],
        features=[x["feature"].nunique() for _, x in g],
        missing_values=[int(x["value"].isna().sum()) for _, x in g],
    )


def _degraded_days(d):
    m = _m(d)
    status = m[m["metric"] == "status"]
    rows = []
    for day, g in status.groupby("day"):
        failed = g["breached"] & g["monitor"].isin(
            ["performance", "feature_drift", "prediction_drift"]
        )
        bad_data = (g["breached"] & (g["monitor"] == "data_quality")).any()
        rows.append((day, int(failed.sum()), bool(bad_data)))
    return frame(
        day=days([r[0] for r in rows]),
        failed=[r[1] for r in rows],
        bad_data=[r[2] for r in rows],
    )


def _strings(d):
    g = _p(d).groupby(["rule", "risk_band", "model_version"]).size().reset_index()
    r = g["rule"]
    return frame(
        rule=r,
        lower=r.str.lower(),
        band=g["risk_band"].str.upper(),
        length=r.str.len().astype("int64"),
        head=r.str.slice(0, 8),
        tail=r.str.slice(9),
        name=r.str.replace("override:", "", regex=False),
        colon=(r.str.find(":") + 1).astype("int64"),
        is_override=r.str.startswith("override"),
        joined=g["risk_band"] + "/" + r,
        piped=g["risk_band"] + "-" + g["model_version"],
    )


def _json(d):
    values = [json.loads(f) for f in _o(d)["features"]]
    frame_ = pd.DataFrame(values)
    g = frame_.groupby("plan")
    return frame(
        plan=list(g.groups),
        n=g.size().to_numpy(),
        spend=g["spend_30d_usd"].mean().to_numpy(),
        orders=g["order_count_30d"].sum().to_numpy().astype("int64"),
        with_tickets=g["open_ticket_count"].count().to_numpy(),
    )


def _math(d):
    p = _p(d)
    p = p[p["prediction_date"] == dt.date(2025, 3, 4)].sort_values("customer_id")
    s = p["score"].to_numpy()
    return frame(
        customer_id=p["customer_id"],
        r2=trino_round(s, 2),
        r0=trino_round(s * 100),
        f=np.floor(s * 10),
        c=np.ceil(s * 10),
        a=np.abs(s - 0.5),
        sq=np.sqrt(s),
        p2=s**2,
        l=np.log(s),
        e=np.exp(s),
        g=np.maximum(s, 0.5),
        le=np.minimum(s, 0.5),
    )


def _conditionals(d):
    p = _p(d)
    p = p[p["prediction_date"].isin([dt.date(2025, 3, 6), dt.date(2025, 3, 7)])]
    p = p.sort_values(["prediction_date", "customer_id"])
    s = p["score"]
    return frame(
        customer_id=p["customer_id"],
        actual_or_missing=p["actual"].fillna(-1).astype("int32"),
        positive_only=p["prediction"].astype("Int32").where(p["prediction"] != 0),
        call=np.where(s >= 0.5, "churn", "stay"),
        churned=[("churned" if a == 1 else None) if not pd.isna(a) else None for a in p["actual"]],
        band=np.select([s >= 0.85, s >= 0.6], ["critical", "high"], "other"),
    )


def _integer_division(d):
    p = _p(d)
    p = p[p["prediction_date"] == dt.date(2025, 3, 5)].sort_values("customer_id").head(120)
    c = p["customer_id"].to_numpy()
    return frame(
        customer_id=c,
        q=np.trunc(c / 7).astype("int64"),
        r=np.fmod(c, 7).astype("int64"),
        nq=np.trunc(-c / 7).astype("int64"),
        nr=np.fmod(-c, 7).astype("int64"),
        half=np.trunc(p["prediction"].to_numpy() / 2).astype("int32"),
        share=np.trunc(c * 100 / 1400).astype("int64"),
    )


def _casts(d):
    p = _p(d)
    p = p[(p["prediction_date"] == dt.date(2025, 3, 5)) & (p["score"] >= 0.001)]
    p = p.sort_values("customer_id")
    s = p["score"].to_numpy()
    return frame(
        customer_id=p["customer_id"],
        tenths=trino_round(s * 10).astype("int32"),
        mille=trino_round(s * 1000).astype("int64"),
        id_text=p["customer_id"].astype(str),
        day_text=p["prediction_date"].astype(str),
        p=p["prediction"].astype(float),
        score_text=[repr(float(x)) for x in s],
        not_a_number=pd.array([None] * len(p), dtype="Int32"),
        back=p["customer_id"].astype("int32"),
        flag=p["prediction"] != 0,
    )


def _where(d):
    p = _p(d)
    p = p[
        (pd.to_datetime(p["prediction_date"]) >= "2025-03-02")
        & (pd.to_datetime(p["prediction_date"]) <= "2025-03-03")
        & p["risk_band"].isin(["high", "critical", "medium"])
        & p["rule"].str.startswith("override")
        & (p["actual"].isna() | (p["actual"] != 0))
    ]
    p = p.sort_values("score", ascending=False).iloc[5:25]
    return frame(customer_id=p["customer_id"], score=p["score"])


def _nulls_order(d):
    g = _p(d).groupby(["prediction_date", "actual"], dropna=False).size().reset_index(name="n")
    g["key"] = g["actual"].fillna(-99)
    g = g.sort_values(["key", "prediction_date"], ascending=[False, True])
    nulls = g[g["actual"].isna()]
    g = pd.concat([g[g["actual"].notna()], nulls])  # NULLs last, also when descending
    return frame(
        prediction_date=days(g["prediction_date"]), actual=g["actual"].astype("Int32"), n=g["n"]
    )


def _derived_having(d):
    g = _p(d).groupby("customer_id").agg(days=("score", "size"), mean_score=("score", "mean"))
    g = g[(g["days"] >= 5) & (g["mean_score"] > 0.5)].reset_index()
    g = g.sort_values(["days", "customer_id"], ascending=[False, True]).head(50)
    return frame(customer_id=g["customer_id"], days=g["days"], mean_score=g["mean_score"])


SELECT_STAR_CUSTOMER = 17


def _select_star(d):
    p = _p(d)
    p = p[p["customer_id"] == SELECT_STAR_CUSTOMER].sort_values("prediction_date")
    out = p.reset_index(drop=True).copy()
    for name in ("prediction_timestamp", "scored_at", "actual_timestamp"):
        out[name] = utc(out[name])
    out["prediction_date"] = days(out["prediction_date"])
    out["actual"] = out["actual"].astype("Int32")
    return out


def _latency(d):
    g = _o(d).groupby(["arm", "model_version"])
    return frame(
        arm=[k[0] for k in g.groups],
        model_version=[k[1] for k in g.groups],
        n=g.size().to_numpy(),
        p99=[x["latency_ms"].tolist() for _, x in g],
        mean_ms=trino_round(g["latency_ms"].mean().to_numpy(), 3),
    )


def _describe(table: str):
    from mlops_assets.monitoring.monitors import SCHEMA as MONITORING
    from mlops_assets.serving.batch import SCHEMA as PREDICTIONS

    names = {
        "timestamp[us, tz=UTC]": "timestamp(6) with time zone",
        "string": "varchar",
        "int64": "bigint",
        "int32": "integer",
        "double": "double",
        "date32[day]": "date",
        "bool": "boolean",
    }
    schema = {"predictions.churn_daily": PREDICTIONS, "monitoring.churn_daily": MONITORING}[table]

    def expected(d):
        comments = {"scored_at": ""}  # created with the current schema: no doc
        return frame(
            Column=schema.names,
            Type=[names[str(f.type)] for f in schema],
            Extra=[""] * len(schema),
            Comment=[comments.get(n, "") for n in schema.names],
        )

    return expected


CASES.update(
    {
        # --- dates and times ---
        "date_trunc_hour": Case(
            f"SELECT date_trunc('hour', requested_at) AS hour, count(*) AS requests FROM {OL} "
            "GROUP BY date_trunc('hour', requested_at) ORDER BY hour LIMIT 30",
            lambda d: (lambda c: frame(hour=utc(c.index.to_series()), requests=c.to_numpy()))(
                utc(_o(d)["requested_at"]).dt.floor("h").value_counts().sort_index().head(30)
            ),
            ["timestamp(6) with time zone", "bigint"],
        ),
        "date_parts": Case(
            "SELECT request_id, year(requested_at) AS y, quarter(requested_at) AS q, "
            "month(requested_at) AS m, week(requested_at) AS w, day(requested_at) AS d, "
            "day_of_week(requested_at) AS dow, day_of_year(requested_at) AS doy, "
            "hour(requested_at) AS h, minute(requested_at) AS mi, "
            "extract(dow FROM requested_at) AS edow, extract(second FROM requested_at) AS s "
            f"FROM {OL} ORDER BY request_id LIMIT 200",
            _online_parts,
            ["varchar", *["bigint"] * 11],
        ),
        "date_add_intervals": Case(
            "SELECT prediction_date, date_add('day', 30, prediction_date) AS due, "
            "prediction_date + INTERVAL '7' DAY AS next_week, "
            "date_add('month', 1, prediction_date) AS next_month, "
            f"date_add('hour', 6, max(scored_at)) AS refreshed FROM {P} "
            "GROUP BY prediction_date ORDER BY prediction_date",
            _date_arithmetic,
            ["date", "date", "date", "date", "timestamp(6) with time zone"],
        ),
        "date_diff_units": Case(
            "SELECT prediction_date, "
            "date_diff('day', prediction_date, DATE '2025-04-01') AS days_to_april, "
            "date_diff('week', prediction_date, DATE '2025-04-01') AS weeks_to_april, "
            "date_diff('hour', min(prediction_timestamp), max(scored_at)) AS hours_to_score, "
            "date_diff('day', max(scored_at), min(prediction_timestamp)) AS days_back "
            f"FROM {P} GROUP BY prediction_date ORDER BY prediction_date",
            _date_diffs,
            ["date", "bigint", "bigint", "bigint", "bigint"],
        ),
        "date_format_unixtime": Case(
            "SELECT request_id, date_format(requested_at, '%Y-%m-%d %H:%i:%s') AS at_text, "
            "date_format(request_date, '%W %e %M %Y') AS day_text, "
            "date_format(requested_at, '%h:%i %p, day %j') AS clock, "
            "to_unixtime(requested_at) AS epoch, date(requested_at) AS day, "
            f"CAST(requested_at AS date) AS day2 FROM {OL} ORDER BY request_id LIMIT 100",
            _date_format,
            ["varchar", "varchar", "varchar", "varchar", "double", "date", "date"],
        ),
        "current_date": Case(
            "SELECT current_date AS today, current_date > DATE '2025-03-01' AS later",
            lambda d: frame(today=days([dt.datetime.now(dt.UTC).date()]), later=[True]),
            ["date", "boolean"],
        ),
        # --- format() ---
        "format_specifiers": Case(
            "SELECT customer_id, format('%.3f', score) AS s3, "
            "format('%s: %d', risk_band, customer_id) AS label, "
            "format('%-8s|%6.2f%%', risk_band, score * 100) AS padded, "
            "format('%05d', customer_id) AS id5, format('%.1f', -score / 100) AS tiny, "
            "format('%s', prediction_date) AS day, format('%s', actual) AS actual_text "
            f"FROM {P} WHERE prediction_date IN (DATE '2025-03-06', DATE '2025-03-07') "
            "AND customer_id < 300 ORDER BY prediction_date, customer_id",
            _format,
            ["bigint", *["varchar"] * 7],
        ),
        "format_aggregates": Case(
            "SELECT risk_band, format('%s: %d customers, mean %.4f', risk_band, count(*), "
            f"avg(score)) FROM {P} GROUP BY risk_band ORDER BY risk_band",
            _format_aggregates,
            ["varchar", "varchar"],
        ),
        # --- UNNEST and arrays ---
        "unnest_array_literal": Case(
            "SELECT t.threshold, count_if(p.score >= t.threshold) AS above "
            f"FROM {P} AS p CROSS JOIN UNNEST(ARRAY[0.3, 0.5, 0.7]) AS t(threshold) "
            "GROUP BY t.threshold ORDER BY t.threshold",
            _thresholds,
            ["decimal(1,1)", "bigint"],
        ),
        "unnest_split": Case(
            f"SELECT part, count(*) AS n FROM {P} CROSS JOIN UNNEST(split(rule, ':')) AS t(part) "
            "GROUP BY part ORDER BY part",
            _rule_parts,
            ["varchar", "bigint"],
        ),
        "array_functions": Case(
            "SELECT rule, cardinality(split(rule, ':')) AS parts, "
            "element_at(split(rule, ':'), 2) AS name, element_at(split(rule, ':'), -1) AS last "
            f"FROM {P} GROUP BY rule ORDER BY rule",
            _arrays,
            ["varchar", "bigint", "varchar", "varchar"],
        ),
        # --- CTEs, joins across predictions, actuals, monitoring and the online log ---
        "cte_join_predictions_actuals_monitoring": Case(
            "WITH volume AS (SELECT prediction_date, model_version, count(*) AS predictions, "
            f"avg(actual) AS churn_rate FROM {P} WHERE actual IS NOT NULL GROUP BY 1, 2), "
            'auc AS (SELECT "day", model_version, "value" AS roc_auc '
            f"FROM {M} WHERE monitor = 'performance' AND metric = 'roc_auc' "
            "AND model_version IS NOT NULL) "
            "SELECT v.prediction_date, v.model_version, v.predictions, v.churn_rate, a.roc_auc "
            "FROM volume v LEFT JOIN auc a "
            "ON a.\"day\" = date_add('day', 31, v.prediction_date) "
            "AND a.model_version = v.model_version ORDER BY 1, 2",
            _cte_join,
            ["date", "varchar", "bigint", "double", "double"],
        ),
        "join_daily_and_online": Case(
            "SELECT o.request_date, count(*) AS matched, avg(o.score) - avg(p.score) AS mean_gap "
            f"FROM {OL} o JOIN {P} p ON p.customer_id = o.customer_id "
            "AND p.prediction_date = o.request_date GROUP BY o.request_date ORDER BY 1",
            _join_online,
            ["date", "bigint", "double"],
        ),
        "in_and_exists_subqueries": Case(
            f"SELECT arm, count(*) AS requests FROM {OL} o WHERE o.customer_id IN "
            f"(SELECT customer_id FROM {P} WHERE actual = 1) AND EXISTS (SELECT 1 FROM {P} p "
            "WHERE p.customer_id = o.customer_id AND p.prediction_date = o.request_date) "
            "GROUP BY arm ORDER BY arm",
            _subqueries,
            ["varchar", "bigint"],
        ),
        "union_all": Case(
            f"SELECT 'batch' AS source, prediction_date AS day, count(*) AS n FROM {P} "
            f"GROUP BY prediction_date UNION ALL SELECT 'online', request_date, count(*) FROM {OL} "
            "GROUP BY request_date ORDER BY day, source",
            _union,
            ["varchar", "date", "bigint"],
        ),
        "except_intersect": Case(
            f"SELECT (SELECT count(*) FROM (SELECT customer_id FROM {OL} EXCEPT "
            f"SELECT customer_id FROM {P} WHERE prediction_date >= DATE '2025-03-09')) "
            f"AS only_online, (SELECT count(*) FROM (SELECT customer_id FROM {OL} INTERSECT "
            f"SELECT customer_id FROM {P} WHERE prediction_date >= DATE '2025-03-09')) AS both",
            _set_operations,
            ["bigint", "bigint"],
        ),
        # --- keyword-named columns and the monitoring/timeline tables ---
        "quoted_keyword_columns": Case(
            f'SELECT occurred_at AS "at", event AS "order", "detail" FROM {T} ORDER BY "at"',
            _keyword_columns,
            ["timestamp(6) with time zone", "varchar", "varchar"],
        ),
        "readme_timeline_query": Case(
            "select * from iceberg.monitoring.timeline order by occurred_at",
            _readme_timeline,
            ["timestamp(6) with time zone", "date", "varchar", "varchar", "varchar", "varchar"],
        ),
        "monitoring_all_versions_is_null": Case(
            f'SELECT "day", "value" AS roc_auc, threshold, breached FROM {M} '
            "WHERE monitor = 'performance' AND metric = 'roc_auc' AND model_version IS NULL "
            'ORDER BY "day"',
            _overall_auc,
            ["date", "double", "double", "boolean"],
        ),
        "monitoring_null_semantics": Case(
            "SELECT monitor, count_if(feature IS NULL) AS model_level, "
            "count_if(model_version IS NULL) AS all_versions, "
            'count(DISTINCT feature) AS features, count_if("value" IS NULL) AS missing_values '
            f"FROM {M} GROUP BY monitor ORDER BY monitor",
            _null_semantics,
            ["varchar", "bigint", "bigint", "bigint", "bigint"],
        ),
        "monitoring_degraded_days": Case(
            'SELECT "day", count_if(breached AND monitor IN '
            "('performance', 'feature_drift', 'prediction_drift')) AS failed, "
            "bool_or(breached AND monitor = 'data_quality') AS bad_data "
            f'FROM {M} WHERE metric = \'status\' GROUP BY "day" ORDER BY "day"',
            _degraded_days,
            ["date", "bigint", "boolean"],
        ),
        # --- strings and JSON ---
        "string_functions": Case(
            "SELECT rule, lower(rule) AS lower, upper(risk_band) AS band, length(rule) AS length, "
            "substr(rule, 1, 8) AS head, substr(rule, 10) AS tail, "
            "replace(rule, 'override:', '') AS name, strpos(rule, ':') AS colon, "
            "starts_with(rule, 'override') AS is_override, concat(risk_band, '/', rule) AS joined, "
            f"risk_band || '-' || model_version AS piped FROM {P} "
            "GROUP BY rule, risk_band, model_version ORDER BY rule, risk_band, model_version",
            _strings,
            [
                *["varchar"] * 3,
                "bigint",
                "varchar",
                "varchar",
                "varchar",
                "bigint",
                "boolean",
                "varchar",
                "varchar",
            ],
        ),
        "json_extract_scalar": Case(
            "SELECT json_extract_scalar(features, '$.plan') AS plan, count(*) AS n, "
            "avg(CAST(json_extract_scalar(features, '$.spend_30d_usd') AS double)) AS spend, "
            "sum(CAST(json_extract_scalar(features, '$.order_count_30d') AS bigint)) AS orders, "
            "count(json_extract_scalar(features, '$.open_ticket_count')) AS with_tickets "
            f"FROM {OL} GROUP BY json_extract_scalar(features, '$.plan') ORDER BY plan",
            _json,
            ["varchar", "bigint", "double", "bigint", "bigint"],
        ),
        # --- numbers, conditionals, integer division, casts ---
        "math_functions": Case(
            "SELECT customer_id, round(score, 2) AS r2, round(score * 100) AS r0, "
            "floor(score * 10) AS f, ceil(score * 10) AS c, abs(score - 0.5) AS a, "
            "sqrt(score) AS sq, power(score, 2) AS p2, ln(score) AS l, exp(score) AS e, "
            "greatest(score, 0.5) AS g, least(score, 0.5) AS le "
            f"FROM {P} WHERE prediction_date = DATE '2025-03-04' ORDER BY customer_id",
            _math,
            ["bigint", *["double"] * 11],
        ),
        "conditionals": Case(
            "SELECT customer_id, coalesce(actual, -1) AS actual_or_missing, "
            "nullif(prediction, 0) AS positive_only, if(score >= 0.5, 'churn', 'stay') AS call, "
            "if(actual = 1, 'churned') AS churned, CASE WHEN score >= 0.85 THEN 'critical' "
            "WHEN score >= 0.6 THEN 'high' ELSE 'other' END AS band "
            f"FROM {P} WHERE prediction_date IN (DATE '2025-03-06', DATE '2025-03-07') "
            "ORDER BY prediction_date, customer_id",
            _conditionals,
            ["bigint", "integer", "integer", "varchar", "varchar", "varchar"],
        ),
        "integer_division_and_modulus": Case(
            "SELECT customer_id, customer_id / 7 AS q, customer_id % 7 AS r, "
            "-customer_id / 7 AS nq, -customer_id % 7 AS nr, prediction / 2 AS half, "
            "customer_id * 100 / 1400 AS share "
            f"FROM {P} WHERE prediction_date = DATE '2025-03-05' ORDER BY customer_id LIMIT 120",
            _integer_division,
            ["bigint", "bigint", "bigint", "bigint", "bigint", "integer", "bigint"],
        ),
        "casts": Case(
            "SELECT customer_id, CAST(score * 10 AS integer) AS tenths, "
            "CAST(score * 1000 AS bigint) AS mille, CAST(customer_id AS varchar) AS id_text, "
            "CAST(prediction_date AS varchar) AS day_text, CAST(prediction AS double) AS p, "
            "CAST(score AS varchar) AS score_text, try_cast(rule AS integer) AS not_a_number, "
            "try_cast(CAST(customer_id AS varchar) AS integer) AS back, "
            f"CAST(prediction AS boolean) AS flag FROM {P} "
            "WHERE prediction_date = DATE '2025-03-05' AND score >= 0.001 ORDER BY customer_id",
            _casts,
            [
                "bigint",
                "integer",
                "bigint",
                "varchar",
                "varchar",
                "double",
                "varchar",
                "integer",
                "integer",
                "boolean",
            ],
        ),
        # --- filters, ordering, subqueries, SELECT * ---
        "where_between_in_like_distinct_from": Case(
            f"SELECT customer_id, score FROM {P} "
            "WHERE prediction_date BETWEEN DATE '2025-03-02' AND DATE '2025-03-03' "
            "AND risk_band IN ('high', 'critical', 'medium') AND rule LIKE 'override%' "
            "AND actual IS DISTINCT FROM 0 ORDER BY score DESC OFFSET 5 LIMIT 20",
            _where,
            ["bigint", "double"],
        ),
        "nulls_sort_last": Case(
            f"SELECT prediction_date, actual, count(*) AS n FROM {P} "
            "GROUP BY prediction_date, actual ORDER BY actual DESC, prediction_date",
            _nulls_order,
            ["date", "integer", "bigint"],
        ),
        "derived_table_having": Case(
            "SELECT customer_id, days, mean_score FROM (SELECT customer_id, count(*) AS days, "
            f"avg(score) AS mean_score FROM {P} GROUP BY customer_id HAVING count(*) >= 5) "
            "WHERE mean_score > 0.5 ORDER BY days DESC, customer_id LIMIT 50",
            _derived_having,
            ["bigint", "bigint", "double"],
        ),
        "select_star": Case(
            f"SELECT * FROM {P} WHERE customer_id = {SELECT_STAR_CUSTOMER} "
            "ORDER BY prediction_date",
            _select_star,
            [
                "varchar",
                "bigint",
                "integer",
                "double",
                "double",
                "varchar",
                "varchar",
                "varchar",
                "date",
                "timestamp(6) with time zone",
                "timestamp(6) with time zone",
                "integer",
                "timestamp(6) with time zone",
            ],
        ),
        "online_latency_percentile": Case(
            "SELECT arm, model_version, count(*) AS n, approx_percentile(latency_ms, 0.99) AS p99, "
            f"round(avg(latency_ms), 3) AS mean_ms FROM {OL} GROUP BY arm, model_version "
            "ORDER BY arm, model_version",
            _latency,
            ["varchar", "varchar", "bigint", "double", "double"],
            approx={"p99": within_rank(0.99)},
        ),
        "cast_and_round_half_away_from_zero": Case(
            "SELECT x, CAST(x AS integer) AS i, CAST(x AS bigint) AS b, round(x) AS r, "
            "round(x, 1) AS r1 FROM (VALUES 2.5e0, -2.5e0, 0.5e0, 1.5e0, -0.5e0, 0.25e0) AS t(x) "
            "ORDER BY x",
            lambda d: (
                lambda x: frame(
                    x=x,
                    i=trino_round(x).astype("int32"),
                    b=trino_round(x).astype("int64"),
                    r=trino_round(x),
                    r1=trino_round(x, 1),
                )
            )(np.sort(np.array([2.5, -2.5, 0.5, 1.5, -0.5, 0.25]))),
            ["double", "integer", "bigint", "double", "double"],
        ),
        "decimal_literals": Case(
            "SELECT avg(score * 1.0) AS mean, sum(prediction * 1.5) AS weighted, "
            "max(prediction + 0.25) AS top, CAST(DECIMAL '2.5' AS integer) AS three, "
            f"CAST(12.345 AS decimal(4, 1)) AS rounded FROM {P}",
            lambda d: frame(
                mean=[_p(d)["score"].mean()],
                weighted=[_p(d)["prediction"].sum() * 1.5],
                top=[_p(d)["prediction"].max() + 0.25],
                three=[3],
                rounded=[12.3],
            ),
            ["double", "decimal(38,1)", "decimal(12,2)", "integer", "decimal(4,1)"],
        ),
        "typed_literals": Case(
            f"SELECT count(*) AS n, min(prediction_date) AS first FROM {P} "
            "WHERE scored_at >= TIMESTAMP '2025-03-10 00:00:00 UTC' "
            "AND prediction_timestamp < TIMESTAMP '2025-03-10 00:00:00' "
            "AND prediction_date > DATE '2025-03-01'",
            lambda d: (lambda p: frame(n=[len(p)], first=days([p["prediction_date"].min()])))(
                _p(d)[
                    (utc(_p(d)["scored_at"]) >= pd.Timestamp("2025-03-10", tz="UTC"))
                    & (utc(_p(d)["prediction_timestamp"]) < pd.Timestamp("2025-03-10", tz="UTC"))
                ]
            ),
            ["bigint", "date"],
        ),
        # --- SHOW / DESCRIBE ---
        "show_schemas": Case(
            "SHOW SCHEMAS FROM iceberg",
            lambda d: frame(Schema=["information_schema", "monitoring", "predictions"]),
            ["varchar"],
        ),
        "show_tables": Case(
            "SHOW TABLES FROM iceberg.predictions",
            lambda d: frame(Table=["churn_daily", "churn_online"]),
            ["varchar"],
        ),
        "show_tables_like": Case(
            "SHOW TABLES FROM monitoring LIKE '%daily'",
            lambda d: frame(Table=["churn_daily"]),
            ["varchar"],
        ),
        "describe_predictions": Case(
            f"DESCRIBE {P}", _describe("predictions.churn_daily"), ["varchar"] * 4
        ),
        "show_columns_monitoring": Case(
            f"SHOW COLUMNS FROM {M}", _describe("monitoring.churn_daily"), ["varchar"] * 4
        ),
    }
)


# -- the checks --------------------------------------------------------------------------------


def _normalize(value):
    if isinstance(value, np.ndarray):
        return [_normalize(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, case: Case) -> None:
    assert list(actual.columns) == list(expected.columns), (actual.columns, expected.columns)
    assert len(actual) == len(expected), (len(actual), len(expected))
    assert len(case.types) == len(expected.columns)
    if not case.ordered:
        actual = actual.sort_values(list(actual.columns)).reset_index(drop=True)
        expected = expected.sort_values(list(expected.columns)).reset_index(drop=True)
    for name, trino in zip(expected.columns, case.types, strict=True):
        got = actual[name]
        assert str(got.dtype) == _dtype(trino, got), (name, trino, str(got.dtype))
        if name in case.approx:
            case.approx[name](got, expected[name])
        elif trino == "double" or trino.startswith("decimal"):
            np.testing.assert_allclose(
                got.to_numpy(float), expected[name].to_numpy(float), rtol=1e-9, err_msg=name
            )
        elif trino.startswith("timestamp") or trino == "date":
            left = pd.to_datetime(got, utc=trino != "date")
            right = pd.to_datetime(expected[name], utc=trino != "date")
            assert left.tolist() == right.tolist(), name
        else:
            left = [_normalize(v) for v in got]
            right = [_normalize(v) for v in expected[name]]
            assert left == right, (name, left[:5], right[:5])


@pytest.mark.parametrize("name", list(CASES))
def test_trino_query_matches_pandas(lake, data, name):
    case = CASES[name]
    actual = run_sql(lake, case.sql)
    assert_same(actual, case.expected(data), case)


P_REFUSED = "iceberg.predictions.churn_daily"
REFUSED = {
    # functions and forms with no exact DuckDB equivalent, named in the error
    "unknown function": (f"SELECT geometric_mean(score) FROM {P_REFUSED}", "geometric_mean()"),
    "user function": ("SELECT my_udf(1)", "my_udf()"),
    "regexp": (f"SELECT regexp_like(rule, 'o+') FROM {P_REFUSED}", "regexp_like()"),
    "typeof": (f"SELECT typeof(score) FROM {P_REFUSED}", "typeof()"),
    "duckdb table function": ("SELECT * FROM read_parquet('/etc/passwd')", "read_parquet()"),
    "format %x": (f"SELECT format('%x', customer_id) FROM {P_REFUSED}", "format() "),
    "format %e": (f"SELECT format('%.2e', score) FROM {P_REFUSED}", "specifier %.2e"),
    "format grouping flag": (f"SELECT format('%,d', customer_id) FROM {P_REFUSED}", "format()"),
    "format %s of double": (f"SELECT format('%s', score) FROM {P_REFUSED}", "%s of a double"),
    "format %d of double": (f"SELECT format('%d', score) FROM {P_REFUSED}", "%d of a double"),
    "format argument index": (f"SELECT format('%1$s', rule) FROM {P_REFUSED}", "format()"),
    "max_by with a count": (f"SELECT max_by(customer_id, score, 3) FROM {P_REFUSED}", "max_by()"),
    "weighted percentile": (
        f"SELECT approx_percentile(score, 2, 0.5) FROM {P_REFUSED}",
        "approx_percentile()",
    ),
    "avg of decimal": (
        f"SELECT avg(CASE WHEN actual = 1 THEN 1.0 ELSE 0.0 END) FROM {P_REFUSED}",
        "avg()",
    ),
    "decimal division": (f"SELECT count(*) / 2.0 FROM {P_REFUSED}", "division of decimal"),
    "date_diff month": (
        f"SELECT date_diff('month', prediction_date, DATE '2025-12-01') FROM {P_REFUSED}",
        "date_diff()",
    ),
    "date_format %D": (f"SELECT date_format(scored_at, '%D') FROM {P_REFUSED}", "%D"),
    "extract timezone": (
        f"SELECT extract(timezone_hour FROM scored_at) FROM {P_REFUSED}",
        "extract()",
    ),
    "cast timestamp to varchar": (
        f"SELECT CAST(scored_at AS varchar) FROM {P_REFUSED}",
        "cast() has no exact equivalent",
    ),
    "cast to varchar(n)": (f"SELECT CAST(rule AS varchar(3)) FROM {P_REFUSED}", "cast()"),
    "cast timestamp to timestamp(3)": (
        f"SELECT CAST(scored_at AS timestamp) FROM {P_REFUSED}",
        "cast()",
    ),
    "array subscript": (f"SELECT split(rule, ':')[1] FROM {P_REFUSED}", "subscript"),
    "date minus date": (
        f"SELECT prediction_date - DATE '2025-01-01' FROM {P_REFUSED}",
        "date - date",
    ),
    "tablesample": (f"SELECT * FROM {P_REFUSED} TABLESAMPLE BERNOULLI (10)", "TABLESAMPLE"),
    "at time zone": (f"SELECT scored_at AT TIME ZONE 'UTC' FROM {P_REFUSED}", "AT TIME ZONE"),
    "rollup": (
        f"SELECT risk_band, count(*) FROM {P_REFUSED} GROUP BY ROLLUP (risk_band)",
        "ROLLUP",
    ),
    "lambda": (
        f"SELECT transform(split(rule, ':'), x -> upper(x)) FROM {P_REFUSED}",
        "transform()",
    ),
    "unqualified table": ("SELECT * FROM churn_daily", "iceberg.<schema>.<table>"),
    # statements that are not one read
    "insert": (f"INSERT INTO {P_REFUSED} SELECT * FROM {P_REFUSED}", "INSERT is not allowed"),
    "create": ("CREATE TABLE iceberg.predictions.x AS SELECT 1 AS a", "CREATE is not allowed"),
    "drop": (f"DROP TABLE {P_REFUSED}", "DROP is not allowed"),
    "delete": (f"DELETE FROM {P_REFUSED} WHERE actual IS NULL", "DELETE is not allowed"),
    "update": (f"UPDATE {P_REFUSED} SET actual = 1", "UPDATE is not allowed"),
    "alter": (f"ALTER TABLE {P_REFUSED} ADD COLUMN x integer", "ALTER is not allowed"),
    "explain": (f"EXPLAIN SELECT * FROM {P_REFUSED}", "EXPLAIN is not allowed"),
    "two statements": ("SELECT 1; SELECT 2", "expected one statement, got 2"),
    "show create table": (f"SHOW CREATE TABLE {P_REFUSED}", "SHOW CREATE"),
    "show tables without a schema": ("SHOW TABLES", "Schema must be specified"),
    "unknown schema": ("SHOW TABLES FROM iceberg.nowhere", "Schema 'nowhere' does not exist"),
    "unknown table": ("DESCRIBE iceberg.predictions.nothing", "does not exist"),
    # checked while running: the value decides, the error names the function
    "json number with a fraction": (
        "SELECT json_extract_scalar(features, '$.spend_30d_usd') FROM "
        "iceberg.predictions.churn_online",
        "json_extract_scalar()",
    ),
    "double as varchar in scientific notation": (
        f"SELECT CAST(score * 1e9 AS varchar) FROM {P_REFUSED}",
        "cast(double AS varchar)",
    ),
    "varchar that is not an integer": (
        f"SELECT CAST(rule AS integer) FROM {P_REFUSED}",
        "Cannot cast a non-integer varchar",
    ),
    "integer division by zero": (
        f"SELECT customer_id / (prediction - prediction) FROM {P_REFUSED}",
        "Division by zero",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_cannot_be_exact_is_refused_by_name(lake, name):
    sql, named = REFUSED[name]
    with pytest.raises(QueryError) as refused:
        run_sql(lake, sql)
    assert named in str(refused.value), str(refused.value)


def test_the_suite_is_broad():
    """At least 40 queries, every category the conformance promise covers."""
    assert len(CASES) >= 40
    sql = " ".join(c.sql.lower() for c in CASES.values())
    for needle in (
        "approx_distinct",
        "approx_percentile",
        "count_if",
        " over (",
        "date_trunc",
        "date_diff",
        "date_add",
        "format(",
        "unnest",
        "with ",
        " join ",
        '"at"',
        '"day"',
        "show ",
        "describe ",
        "json_extract_scalar",
    ):
        assert needle in sql, needle


def test_mlops_sql_prints_the_refusal_without_a_traceback(lake):
    mlops = Path(sys.executable).parent / "mlops"
    env = {**os.environ, "MLOPS_DATA_DIR": str(lake.data_dir)}
    refused = subprocess.run(
        [str(mlops), "sql", f"SELECT geometric_mean(score) FROM {P_REFUSED}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "geometric_mean()" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr + refused.stdout
    answered = subprocess.run(
        [str(mlops), "sql", "SHOW TABLES FROM iceberg.predictions"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert "churn_daily" in answered.stdout and "churn_online" in answered.stdout


def test_the_grafana_sql_panels_run_on_the_embedded_engine(lake):
    """The dashboard's Trino panels (deploy/monitoring) are accepted and answer here too."""
    dashboard = json.loads(
        (PROJECT_ROOT / "deploy/monitoring/grafana/dashboards/mlops-churn.json").read_text()
    )
    queries = [t["rawSQL"] for p in dashboard["panels"] for t in p["targets"] if "rawSQL" in t]
    assert queries
    for query in queries:
        assert len(run_sql(lake, query)) > 0, query
