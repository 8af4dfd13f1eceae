"""Fairness by segment: on monitoring day D, the predictions whose actuals have just become due
(the prediction day D - window - 1, as the performance monitor reads them, pooled with the
configured number of prediction days before it), grouped by each configured segment attribute
(plan, country, acquisition channel, ...: a feature of the model's service, as it was when the
prediction was made). Per group, fairlearn's MetricFrame gives the
selection rate, recall (true positive rate), false positive rate, precision, ROC AUC and count;
per attribute, the largest difference and the smallest ratio between its groups. A gap over its
configured limit is a breach. Groups below the minimum size are reported with their count and left
out of the gaps; a rate whose denominator is too small in a group is undefined there.

Rows in the monitoring table: `<metric>` per group (feature `attribute=group`), `<metric>_difference`
and `<metric>_ratio` per attribute (feature `attribute`), and the headline `max_gap_to_limit` (the
worst gap as a share of its limit: over 1 is a breach)."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from mlops_assets.monitoring.results import MonitoringError, MonitorResult

if TYPE_CHECKING:
    import pandas as pd

    from mlops_assets.model_config import FairnessConfig, ModelConfig
    from mlops_assets.monitoring.inputs import MonitorInputs

METRICS = ("selection_rate", "recall", "false_positive_rate", "precision", "roc_auc")
HEADLINE = "max_gap_to_limit"
MISSING = "(missing)"  # the group of rows whose segment value is null


def fairness(inputs: MonitorInputs, day: dt.date) -> MonitorResult:
    config = inputs.config
    limits = config.monitoring.fairness
    last = day - dt.timedelta(days=config.label_window_days + 1)
    days = [last - dt.timedelta(days=i) for i in reversed(range(limits.window_days))]
    evaluated = str(last) if len(days) == 1 else f"{days[0]}..{last}"
    result = MonitorResult("fairness", day, "ok", {"evaluated_prediction_days": evaluated})
    if not limits.segments:
        return _nothing(result, "no_data", "no fairness segments configured")
    frames, predicted = [], 0
    for evaluated_day in days:
        rows = inputs.predictions(evaluated_day)
        labelled = rows[rows["actual"].notna()]
        predicted += len(rows)
        if len(labelled):
            frames.append(segment_frame(config, labelled, inputs.features(evaluated_day)))
    if not frames:
        if predicted:
            return _nothing(result, "pending", f"no actuals yet for the predictions of {evaluated}")
        return _nothing(result, "no_data", f"no predictions on {evaluated} to evaluate")
    import pandas as pd

    judge(pd.concat(frames, ignore_index=True), limits, result)
    return result


def _nothing(result: MonitorResult, status: str, detail: str) -> MonitorResult:
    result.status = status
    result.summary["detail"] = detail
    result.row("labelled_rows", 0, detail=detail)
    return result


def segment_frame(
    config: ModelConfig, labelled: pd.DataFrame, features: pd.DataFrame
) -> pd.DataFrame:
    """`y_true`, `y_pred`, `y_score` of each labelled prediction with its segment values, taken
    from the features it was scored with (joined on the model's join keys)."""
    segments = config.monitoring.fairness.segments
    missing = [s for s in segments if s not in features.columns]
    if missing:
        served = sorted(c for c in features.columns if c not in config.join_keys)
        raise MonitoringError(
            f"fairness segments {missing} are not features of {config.feature_service} "
            f"(its features: {', '.join(served)})"
        )
    keys = [k for k in config.join_keys if k in features.columns and k in labelled.columns]
    values = features[keys + segments].drop_duplicates(keys)
    frame = labelled.merge(values, on=keys, how="left")
    score = frame["score"].to_numpy(float)
    # `auto`: each version cut at its own threshold when it served; the table has its verdicts.
    if config.decision_threshold == "auto":
        predicted = frame["prediction"].to_numpy(int)
    else:
        predicted = (score >= config.decision_threshold).astype(int)
    return frame[segments].assign(
        y_true=frame["actual"].to_numpy(int), y_pred=predicted, y_score=score
    )


def judge(frame: pd.DataFrame, limits: FairnessConfig, result: MonitorResult) -> None:
    """The per-group rates and the gaps of every segment attribute of `frame` (columns `y_true`,
    `y_pred`, `y_score` and the attributes) into `result`, with the breaches and the headline."""
    result.row("labelled_rows", len(frame))
    gaps: list[tuple[float, str]] = []  # (share of the limit, what)
    ignored = 0
    for attribute in limits.segments:
        groups = frame[attribute].astype(object).where(frame[attribute].notna(), MISSING)
        groups = groups.astype(str).rename(attribute)
        counts = groups.value_counts()
        small = counts[counts < limits.min_group_size]
        ignored += len(small)
        for group, n in small.items():
            result.row(
                "count",
                int(n),
                feature=f"{attribute}={group}",
                detail=f"ignored: fewer than {limits.min_group_size} rows",
            )
        kept = groups.isin(counts.index.difference(small.index))
        by_group = group_metrics(frame[kept.to_numpy()], groups[kept], limits.min_class_rows)
        gaps += _gaps(result, attribute, by_group, limits)
    worst = max(gaps, default=(math.nan, "no gap could be measured (fewer than 2 groups)"))
    result.row(HEADLINE, worst[0], 1.0, breached=worst[0] > 1, detail=worst[1])
    breaches = [what for share, what in sorted(gaps, reverse=True) if share > 1]
    result.summary.update(
        labelled_rows=len(frame),
        segments=list(limits.segments),
        ignored_groups=ignored,
        **{HEADLINE: None if math.isnan(worst[0]) else round(worst[0], 4)},
    )
    if breaches:
        result.status = "breached"
        result.summary["breaches"] = breaches


def group_metrics(frame: pd.DataFrame, groups: pd.Series, min_class_rows: int) -> pd.DataFrame:
    """fairlearn's MetricFrame over `groups`: one row per group, a column per metric of METRICS
    (NaN where the group has too few rows in its denominator) and `count`."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    if frame.empty:
        return pd.DataFrame(columns=[*METRICS, "count"], dtype=float)
    y_score = frame["y_score"].to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric_frame = MetricFrame(
            metrics=_metric_functions(min_class_rows),
            y_true=frame["y_true"].to_numpy(int),
            y_pred=frame["y_pred"].to_numpy(int),
            sensitive_features=groups.to_numpy(),
            sample_params={"roc_auc": {"y_score": y_score}},
        )
        by_group = metric_frame.by_group
    by_group.index = by_group.index.astype(str)
    return by_group.astype(float)


def _metric_functions(n: int) -> dict:
    """The rates as (y_true, y_pred) functions for MetricFrame, NaN below `n` denominator rows."""
    from fairlearn.metrics import (
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import precision_score, roc_auc_score

    def recall(y_true, y_pred):
        return true_positive_rate(y_true, y_pred) if (y_true == 1).sum() >= n else np.nan

    def fpr(y_true, y_pred):
        return false_positive_rate(y_true, y_pred) if (y_true == 0).sum() >= n else np.nan

    def precision(y_true, y_pred):
        return precision_score(y_true, y_pred) if (y_pred == 1).sum() >= n else np.nan

    def roc_auc(y_true, y_pred, y_score):
        both = min((y_true == 1).sum(), (y_true == 0).sum()) >= n
        return roc_auc_score(y_true, y_score) if both else np.nan

    return {
        "selection_rate": selection_rate,
        "recall": recall,
        "false_positive_rate": fpr,
        "precision": precision,
        "roc_auc": roc_auc,
        "count": count,
    }


def _gaps(
    result: MonitorResult, attribute: str, by_group: pd.DataFrame, limits: FairnessConfig
) -> list[tuple[float, str]]:
    """Rows per group and per metric's gap; returns each limited gap as a share of its limit."""
    for group, values in by_group.iterrows():
        feature = f"{attribute}={group}"
        result.row("count", float(values["count"]), feature=feature)
        for metric in METRICS:
            undefined = "" if np.isfinite(values[metric]) else "undefined: too few rows"
            result.row(metric, values[metric], feature=feature, detail=undefined)
    shares = []
    for metric in METRICS:
        defined = by_group[metric].dropna()
        if len(defined) < 2:
            detail = f"defined in {len(defined)} group(s): no gap"
            result.row(f"{metric}_difference", None, feature=attribute, detail=detail)
            continue
        shares += _metric_gap(result, attribute, metric, defined, limits)
    return shares


def _metric_gap(
    result: MonitorResult,
    attribute: str,
    metric: str,
    defined: pd.Series,
    limits: FairnessConfig,
) -> list[tuple[float, str]]:
    """The difference (best - worst) and ratio (worst / best) of one metric between the groups
    where it is defined, judged against the metric's limits; the limited ones as shares."""
    high, low = float(defined.max()), float(defined.min())
    between = f"{defined.idxmax()} {high:.3f} vs {defined.idxmin()} {low:.3f}"
    difference, ratio = high - low, (low / high if high > 0 else math.nan)
    max_difference = limits.max_difference.get(metric)
    min_ratio = limits.min_ratio.get(metric)
    over = max_difference is not None and difference > max_difference
    under = min_ratio is not None and ratio < min_ratio
    name = f"{metric}_difference"
    result.row(name, difference, max_difference, breached=over, feature=attribute, detail=between)
    name = f"{metric}_ratio"
    result.row(name, ratio, min_ratio, breached=under, feature=attribute, detail=between)
    shares = []
    if max_difference is not None:
        what = f"{metric} difference by {attribute} {difference:.3f} (limit {max_difference})"
        shares.append((difference / max_difference, f"{what}: {between}"))
    if min_ratio is not None and math.isfinite(ratio):
        what = f"{metric} ratio by {attribute} {ratio:.3f} (limit {min_ratio})"
        shares.append(((1 - ratio) / (1 - min_ratio), f"{what}: {between}"))
    return shares
