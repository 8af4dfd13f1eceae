"""Conformance cases: dates and times, and format()."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tests.lakehouse.sql_oracles import (
    OL,
    Case,
    P,
    _o,
    _p,
    days,
    frame,
    java_f,
    utc,
)


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


DATE_CASES: dict[str, Case] = {
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
}
