"""Conformance cases: window functions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tests.lakehouse.sql_oracles import (
    Case,
    P,
    _p,
    days,
    frame,
)


def _ntile(n: int, buckets: int) -> np.ndarray:
    """SQL ntile: the first n % buckets buckets get one row more."""
    sizes = [n // buckets + (1 if i < n % buckets else 0) for i in range(buckets)]
    return np.repeat(np.arange(1, buckets + 1), sizes).astype("int64")


WINDOW_CASES: dict[str, Case] = {
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
