"""What the sensors decide, as pure functions of the monitoring and prediction tables.

Retraining: a monitored day is *degraded* when a monitor a retraining can fix (performance, feature
or prediction drift) failed its check and the day's data quality did not (a broken feed is not
fixed by retraining). A degradation window is a run of consecutive degraded days; it asks for a
retraining only once it is `consecutive_days` long (one bad day is noise), and each window asks
once, identified by its first day.

Canary: once both arms of a running canary have `canary_min_labelled` labelled predictions scored
since the canary started, the challenger is promoted if its ROC AUC is at least the champion's minus
the allowed regression, and rolled back otherwise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.monitoring.registry import RETRAIN_ON


@dataclass
class Window:
    start: dt.date
    end: dt.date
    monitors: dict[str, list[str]] = field(default_factory=dict)  # day -> failed monitors

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def key(self) -> str:
        return self.start.isoformat()


def degradation_windows(table: pd.DataFrame) -> list[Window]:
    """Runs of consecutive degraded monitoring days, oldest first."""
    if table.empty:
        return []
    status = table[table["metric"] == "status"]
    failed = status[status["breached"]]
    bad_data = set(failed.loc[failed["monitor"] == "data_quality", "day"])
    degraded: dict[dt.date, list[str]] = {}
    for day, group in failed[failed["monitor"].isin(RETRAIN_ON)].groupby("day"):
        if day not in bad_data:
            degraded[day] = sorted(group["monitor"].unique().tolist())
    windows: list[Window] = []
    for day in sorted(degraded):
        if windows and (day - windows[-1].end).days == 1:
            windows[-1].end = day
        else:
            windows.append(Window(day, day))
        windows[-1].monitors[day.isoformat()] = degraded[day]
    return windows


@dataclass
class RetrainDecision:
    launch: bool
    reason: str
    window: Window | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def retrain_decision(
    table: pd.DataFrame,
    consecutive_days: int,
    handled: set[str],
    last_launch: dt.datetime | None,
    cooldown_hours: float,
    now: dt.datetime,
) -> RetrainDecision:
    windows = [w for w in degradation_windows(table) if w.days >= consecutive_days]
    if not windows:
        longest = max((w.days for w in degradation_windows(table)), default=0)
        return RetrainDecision(
            False,
            f"no degradation of {consecutive_days}+ consecutive days (longest run: {longest})",
        )
    window = windows[-1]  # older windows are superseded by the newest
    if window.key in handled:
        return RetrainDecision(False, f"window from {window.start} already handled", window)
    if last_launch is not None and now - last_launch < dt.timedelta(hours=cooldown_hours):
        until = last_launch + dt.timedelta(hours=cooldown_hours)
        return RetrainDecision(False, f"cooldown until {until:%Y-%m-%d %H:%M} UTC", window)
    evidence = _evidence(table, window)
    failed = sorted({m for monitors in window.monitors.values() for m in monitors})
    reason = (
        f"{', '.join(failed)} failed on {window.days} consecutive monitored days "
        f"({window.start} .. {window.end})"
    )
    return RetrainDecision(True, reason, window, evidence)


def _evidence(table: pd.DataFrame, window: Window) -> dict[str, Any]:
    rows = table[
        (table["day"] >= window.start)
        & (table["day"] <= window.end)
        & table["breached"]
        & (table["metric"] != "status")
    ]
    headline = rows[rows["feature"].isna()]  # NULL feature: a model-level number
    evidence = {
        f"{r.day}:{r.monitor}:{r.metric}{':v' + r.model_version if r.model_version else ''}": round(
            float(r.value), 4
        )
        for r in headline.itertuples()
        if r.value is not None and np.isfinite(r.value)
    }
    drifted = rows[(rows["monitor"] == "feature_drift") & rows["feature"].notna()]
    if len(drifted):
        evidence["drifted_features"] = sorted(drifted["feature"].unique().tolist())
    return evidence


@dataclass
class CanaryDecision:
    action: str  # wait | promote | rollback
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


def canary_decision(
    predictions: pd.DataFrame,
    champion: str,
    challenger: str,
    started_at: dt.datetime,
    min_labelled: int,
    max_auc_regression: float,
) -> CanaryDecision:
    """`predictions`: rows of the predictions table (model_version, score, actual, scored_at).
    Only rows scored since the canary started count (`scored_at`, the scoring run's wall clock,
    not `prediction_timestamp`, the as-of time the prediction is for)."""
    from sklearn.metrics import roc_auc_score

    since = predictions[
        (pd.to_datetime(predictions["scored_at"], utc=True) >= pd.Timestamp(started_at))
        & predictions["actual"].notna()
    ]
    numbers: dict[str, Any] = {}
    for role, version in (("champion", champion), ("challenger", challenger)):
        arm = since[since["model_version"] == version]
        numbers[f"{role}_version"] = version
        numbers[f"{role}_labelled"] = len(arm)
        y = arm["actual"].to_numpy(int)
        if len(arm) and len(np.unique(y)) == 2:
            numbers[f"{role}_roc_auc"] = round(float(roc_auc_score(y, arm["score"])), 4)
    if min(numbers["champion_labelled"], numbers["challenger_labelled"]) < min_labelled:
        return CanaryDecision(
            "wait",
            f"labelled canary traffic: champion {numbers['champion_labelled']}, challenger "
            f"{numbers['challenger_labelled']} (need {min_labelled} each)",
            numbers,
        )
    if "champion_roc_auc" not in numbers or "challenger_roc_auc" not in numbers:
        return CanaryDecision("wait", "an arm's labels have a single class so far", numbers)
    champ, chall = numbers["champion_roc_auc"], numbers["challenger_roc_auc"]
    if chall >= champ - max_auc_regression:
        return CanaryDecision(
            "promote",
            f"challenger v{challenger} ROC AUC {chall:.4f} vs champion v{champion} {champ:.4f} on "
            "labelled canary traffic",
            numbers,
        )
    return CanaryDecision(
        "rollback",
        f"challenger v{challenger} ROC AUC {chall:.4f} trails champion v{champion} {champ:.4f} "
        f"by more than {max_auc_regression} on labelled canary traffic",
        numbers,
    )
