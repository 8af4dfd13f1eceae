"""The monitors, in one registry: each entry names its asset, its check, what it measures, the
headline number plotted over time, whether a breach is one retraining can fix, and the function
that computes it. The Dagster assets, checks, plots and the retraining sensor are all built from
this list: adding a monitor is one entry here. The compute functions are named, not imported, so
loading the code location does not pull in pandas and scipy."""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops_assets.monitoring.inputs import MonitorInputs
    from mlops_assets.monitoring.results import MonitorResult


@dataclass(frozen=True)
class Monitor:
    name: str
    check: str
    description: str
    headline: str  # the metric plotted over time (the row with no feature, all versions)
    retrain_worthy: bool  # a breach a retraining can fix (bad data is not)
    compute: str  # "module:function" under mlops_assets.monitoring, (inputs, day) -> result
    reads_features: bool = False  # needs the feature store
    reads_actuals: bool = False  # depends on the delayed actuals
    # A function of plots.py, (table, day) -> PNG, drawing the last day in detail (per feature,
    # per group); shown in the materialization's metadata under the function's name.
    day_plot: str | None = None

    def run(self, inputs: MonitorInputs, day: dt.date) -> MonitorResult:
        module, function = self.compute.split(":")
        return getattr(importlib.import_module(f"mlops_assets.monitoring.{module}"), function)(
            inputs, day
        )


MONITORS: dict[str, Monitor] = {
    m.name: m
    for m in (
        Monitor(
            "performance",
            "performance_within_thresholds",
            "ROC AUC, precision, recall and calibration of the predictions whose actuals are due "
            "on the monitoring day (the prediction day one label window earlier), overall and per "
            "model version.",
            "roc_auc",
            True,
            "performance:performance",
            reads_actuals=True,
        ),
        Monitor(
            "feature_drift",
            "feature_drift_within_thresholds",
            "KS test and PSI of every feature of the day's scored customers against the "
            "champion's training data; breached when too many features drift or one is missing.",
            "drifted_share",
            True,
            "drift:feature_drift",
            reads_features=True,
            day_plot="drift_per_feature",
        ),
        Monitor(
            "prediction_drift",
            "prediction_drift_within_thresholds",
            "PSI of the day's score distribution against the champion's training scores.",
            "score_psi",
            True,
            "drift:prediction_drift",
        ),
        Monitor(
            "data_quality",
            "data_quality_within_thresholds",
            "Rows scored against the trailing week, null shares, features missing from the data.",
            "rows_scored",
            False,
            "quality:data_quality",
            reads_features=True,
        ),
        Monitor(
            "fairness",
            "fairness_within_thresholds",
            "Selection rate, recall, false positive rate, precision and ROC AUC per group of each "
            "segment attribute (plan, country, channel: the features the predictions were made "
            "with) on the predictions whose actuals are due, with fairlearn's MetricFrame; "
            "breached when the gap between groups of a metric crosses its configured limit. Not "
            "a retraining trigger: a model retrained on the same data learns the same gap; "
            "closing it takes a decision (features, sample weights, per-group thresholds).",
            "max_gap_to_limit",
            False,
            "fairness:fairness",
            reads_features=True,
            reads_actuals=True,
            day_plot="fairness_per_group",
        ),
    )
}
RETRAIN_ON = tuple(name for name, m in MONITORS.items() if m.retrain_worthy)
