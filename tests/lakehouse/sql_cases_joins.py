"""Conformance cases: UNNEST and arrays, CTEs, joins and set operations, keyword-named columns and
the monitoring/timeline tables."""

from __future__ import annotations

import datetime as dt

from tests.lakehouse.sql_oracles import (
    OL,
    Case,
    M,
    P,
    T,
    _m,
    _o,
    _p,
    days,
    frame,
    utc,
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
        model=t["model"],
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


JOIN_CASES: dict[str, Case] = {
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
        ["timestamp(6) with time zone", "date", *["varchar"] * 5],
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
}
