"""Conformance cases: the analyst queries in analytics/ and the aggregate functions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.lakehouse.sql_lake import ANALYTICS
from tests.lakehouse.sql_oracles import (
    Case,
    P,
    _p,
    days,
    frame,
    trino_round,
    utc,
    week_start,
    within_rank,
    within_ranks,
    within_relative,
)


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


def _fraud_weekly(d):
    """Flags and their precision among closed windows, per week of orders (pandas)."""
    f = d["fraud"].assign(week=lambda x: week_start(x["prediction_date"]))
    rows = []
    for week, g in f.groupby("week"):
        flagged = g["prediction"] == 1
        labelled = g["actual"].notna()
        closed = int((flagged & labelled).sum())
        hits = int((flagged & (g["actual"] == 1)).sum())
        rows.append(
            (
                week,
                len(g),
                int(flagged.sum()),
                closed,
                round(hits / closed, 6) if closed else None,
                int((g["actual"] == 1).sum()),
                int((~labelled).sum()),
            )
        )
    names = ["week", "orders", "flagged", "flagged_labelled", "flagged_precision"]
    names += ["chargebacks", "pending"]
    return frame(**{name: [r[i] for r in rows] for i, name in enumerate(names)})


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


AGGREGATE_CASES: dict[str, Case] = {
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
    "analytics_fraud_weekly": Case(
        _sql("fraud_weekly.sql"),
        _fraud_weekly,
        ["date", "bigint", "bigint", "bigint", "double", "bigint", "bigint"],
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
}
