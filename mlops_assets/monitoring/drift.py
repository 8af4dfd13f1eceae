"""Drift against the serving champion's reference (its training data and scores): per feature, a
two-sample KS test and the PSI (a feature drifts when both say so; too many drifting features, or
a missing one, is a breach), and the PSI of the day's score distribution."""

from __future__ import annotations

import datetime as dt

from mlops_assets.monitoring.inputs import MonitorInputs
from mlops_assets.monitoring.results import MonitorResult
from mlops_assets.monitoring.statistics import ks, psi_categorical, psi_numeric


def feature_drift(inputs: MonitorInputs, day: dt.date) -> MonitorResult:
    config = inputs.config
    limits = config.monitoring
    version = inputs.champion()
    ref = inputs.reference(version)
    current = inputs.features(day)
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


def prediction_drift(inputs: MonitorInputs, day: dt.date) -> MonitorResult:
    limits = inputs.config.monitoring
    version = inputs.champion()
    ref = inputs.reference(version)
    rows = inputs.predictions(day)
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
