"""Performance against delayed actuals: on monitoring day D, the predictions of the day whose label
window has just closed (D - window - 1) are compared with their actuals: ROC AUC (against the
config's floor and the serving version's own holdout AUC minus the allowed drop), calibration,
precision and recall, overall and per model version."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mlops_assets.monitoring.inputs import MonitorInputs
from mlops_assets.monitoring.results import MonitorResult


def performance(inputs: MonitorInputs, day: dt.date) -> MonitorResult:
    config = inputs.config
    evaluated = day - dt.timedelta(days=config.label_window_days + 1)
    rows = inputs.predictions(evaluated)
    labelled = rows[rows["actual"].notna()]
    result = MonitorResult("performance", day, "ok", {"evaluated_prediction_day": str(evaluated)})
    if labelled.empty:
        result.status = "pending" if len(rows) else "no_data"
        detail = (
            f"no actuals yet for the predictions of {evaluated}"
            if len(rows)
            else f"no predictions on {evaluated} to evaluate"
        )
        result.summary["detail"] = detail
        result.row("labelled_rows", 0, detail=detail)
        return result
    # None: all versions together (NULL in the table), then each version.
    groups = [(None, labelled)] + [(str(v), g) for v, g in labelled.groupby("model_version")]
    for version, group in groups:
        _judge(inputs, result, version, group, evaluated)
    overall = [r for r in result.rows if r["model_version"] is None and r["breached"]]
    if overall:
        result.status = "breached"
        result.summary["breaches"] = [
            f"{r['metric']}={r['value']:.4f} (limit {r['threshold']})" for r in overall
        ]
    return result


def _judge(
    inputs: MonitorInputs,
    result: MonitorResult,
    version: str | None,
    group: pd.DataFrame,
    evaluated: dt.date,
) -> None:
    """The numbers of one group of labelled predictions (one version, or all together)."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    from mlops_assets.training.estimators import expected_calibration_error

    limits = inputs.config.monitoring
    y, score = group["actual"].to_numpy(int), group["score"].to_numpy()
    n = len(group)
    result.row("labelled_rows", n, version=version, detail=str(evaluated))
    if len(np.unique(y)) < 2 or n < limits.min_labelled_rows:
        detail = f"{n} labelled rows, {len(np.unique(y))} class(es): not enough to judge"
        result.row("roc_auc", None, limits.min_roc_auc, version=version, detail=detail)
        return
    auc = float(roc_auc_score(y, score))
    ece = expected_calibration_error(y, score)
    threshold = inputs.config.decision_threshold
    # `auto`: each version cut at its own threshold when it served; the table has its verdicts.
    if threshold == "auto":
        predicted = group["prediction"].to_numpy(int)
    else:
        predicted = (score >= threshold).astype(int)
    # The floor: the config's absolute minimum, or the serving versions' own holdout AUC minus the
    # allowed drop, whichever is higher.
    served = [version] if version else sorted(group["model_version"].astype(str).unique())
    holdout = [h for h in (inputs.holdout_auc(v) for v in served) if h is not None]
    floor = max([limits.min_roc_auc] + [h - limits.max_roc_auc_drop for h in holdout])
    result.row("roc_auc", auc, floor, breached=auc < floor, version=version)
    if holdout:
        result.row("holdout_roc_auc", float(np.mean(holdout)), version=version)
    result.row("ece", ece, limits.max_ece, breached=ece > limits.max_ece, version=version)
    precision = float(precision_score(y, predicted, zero_division=0))
    result.row("precision", precision, version=version)
    result.row("recall", float(recall_score(y, predicted, zero_division=0)), version=version)
    result.row("label_rate", float(y.mean()), version=version)
    result.row("mean_score", float(score.mean()), version=version)
    if version is None:
        result.summary.update(roc_auc=round(auc, 4), ece=round(ece, 4), labelled_rows=n)
