"""Conformance cases: strings and JSON, numbers, conditionals, integer division and casts."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from tests.lakehouse.sql_oracles import (
    OL,
    Case,
    P,
    _o,
    _p,
    frame,
    trino_round,
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


FUNCTION_CASES: dict[str, Case] = {
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
}
