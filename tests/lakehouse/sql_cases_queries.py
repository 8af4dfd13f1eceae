"""Conformance cases: filters, ordering, subqueries, SELECT *, literals, SHOW / DESCRIBE."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.lakehouse.sql_lake import CONFIG
from tests.lakehouse.sql_oracles import (
    OL,
    Case,
    M,
    P,
    _o,
    _p,
    days,
    frame,
    trino_round,
    utc,
    within_rank,
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
    from mlops_assets.lakehouse.tables import MONITORING, PREDICTIONS

    names = {
        "timestamp[us, tz=UTC]": "timestamp(6) with time zone",
        "string": "varchar",
        "int64": "bigint",
        "int32": "integer",
        "double": "double",
        "date32[day]": "date",
        "bool": "boolean",
    }
    schema = {
        PREDICTIONS.name(CONFIG.name): PREDICTIONS.schema,
        MONITORING.name(CONFIG.name): MONITORING.schema,
    }[table]

    def expected(d):
        comments = {"scored_at": ""}  # created with the current schema: no doc
        return frame(
            Column=schema.names,
            Type=[names[str(f.type)] for f in schema],
            Extra=[""] * len(schema),
            Comment=[comments.get(n, "") for n in schema.names],
        )

    return expected


QUERY_CASES: dict[str, Case] = {
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
        f"SELECT * FROM {P} WHERE customer_id = {SELECT_STAR_CUSTOMER} ORDER BY prediction_date",
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
            "varchar",
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
        lambda d: frame(Table=["churn_daily", "churn_online", "fraud_daily"]),
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
