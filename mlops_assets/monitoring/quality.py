"""Data quality and volume: rows scored against the trailing week's median, null shares per
feature, features missing from the production data. A breach here is bad data, which retraining
does not fix (the retraining sensor ignores degraded days whose data quality failed)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from mlops_assets.monitoring.inputs import MonitorInputs
from mlops_assets.monitoring.results import MonitorResult


def data_quality(inputs: MonitorInputs, day: dt.date) -> MonitorResult:
    config = inputs.config
    limits = config.monitoring
    result = MonitorResult("data_quality", day, "ok", {})
    rows = inputs.predictions(day)
    counts = inputs.daily_counts(day - dt.timedelta(days=7), day - dt.timedelta(days=1))
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
    current = inputs.features(day)
    service = inputs.store.get_feature_service(config.feature_service)
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
