"""Drift on the live inference stream, as pure functions: a window of recently logged requests
against the serving champion's reference (its training features and scores, as the daily monitor
reads them), and the decision to retrain on a sustained breach.

A window is *breached* like a monitored day: a feature drifts when its PSI exceeds `psi_max` and,
for a continuous feature, its KS p-value is under `ks_pvalue` as well; the window breaches when
the share of drifting features exceeds `max_drifted_share`, a reference feature is missing from
the logged requests, or the champion's score PSI exceeds `prediction_psi_max`. Numeric features
with few distinct reference values (counts) are compared as categories, PSI only: KS on ties
flags noise on small windows. The daily monitor's `drift_exclude` features are left out.

An *incident* opens after `consecutive_windows` breached windows in a row and asks for one
retraining (later, if the cooldown still runs); it closes after `clean_windows_to_close` clean
windows in a row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.model_config import MonitoringConfig
from mlops_assets.monitoring.statistics import EPS, ks, psi_numeric

SCORE = "__score"


@dataclass(frozen=True)
class OnlineLimits:
    window_rows: int
    min_rows: int
    step_rows: int
    consecutive_windows: int
    clean_windows_to_close: int
    min_distinct_for_ks: int
    max_rows_per_read: int
    psi_max: float
    ks_pvalue: float
    max_drifted_share: float
    prediction_psi_max: float
    cooldown_hours: float
    drift_exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, monitoring: MonitoringConfig) -> OnlineLimits:
        """The online section of a model's monitoring config, its empty thresholds the daily's."""
        online = monitoring.online
        pick = {}
        for name in ("psi_max", "ks_pvalue", "max_drifted_share", "prediction_psi_max"):
            value = getattr(online, name)
            pick[name] = getattr(monitoring, name) if value is None else value
        return cls(
            window_rows=online.window_rows,
            min_rows=online.min_rows,
            step_rows=online.step_rows,
            consecutive_windows=online.consecutive_windows,
            clean_windows_to_close=online.clean_windows_to_close,
            min_distinct_for_ks=online.min_distinct_for_ks,
            max_rows_per_read=online.max_rows_per_read,
            cooldown_hours=monitoring.cooldown_hours,
            drift_exclude=tuple(monitoring.drift_exclude),
            **pick,
        )


# -- the window ------------------------------------------------------------------------------------


def slide(window: pd.DataFrame, new: pd.DataFrame, size: int) -> pd.DataFrame:
    """The newest `size` rows of the window followed by the new rows (in arrival order)."""
    frames = [f for f in (window, new) if len(f)]
    if not frames:
        return window
    joined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return joined.sort_values("requested_at", kind="stable").tail(size).reset_index(drop=True)


def features_of(window: pd.DataFrame) -> pd.DataFrame:
    """The logged requests' features (the `features` JSON column) as columns, their score as
    `__score` and the answering `model_version`."""
    parsed = pd.DataFrame.from_records([json.loads(f) for f in window["features"]])
    parsed.index = window.index
    parsed[SCORE] = window["score"].to_numpy(float)
    parsed["model_version"] = window["model_version"].to_numpy()
    return parsed


# -- one window against the reference -------------------------------------------------------------


@dataclass
class WindowResult:
    rows: int
    breached: bool
    reason: str
    drifted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    drifted_share: float = 0.0
    score_psi: float | None = None
    psi: dict[str, float] = field(default_factory=dict)
    ks_pvalue: dict[str, float] = field(default_factory=dict)

    def top_psi(self, n: int = 5) -> dict[str, float]:
        ranked = sorted(self.psi.items(), key=lambda kv: -kv[1] if np.isfinite(kv[1]) else 0)
        return {k: round(v, 4) for k, v in ranked[:n]}


def monitored_features(reference: pd.DataFrame, limits: OnlineLimits) -> list[str]:
    return [c for c in reference.columns if c != SCORE and c not in limits.drift_exclude]


@dataclass
class FeatureReference:
    """One feature's reference distribution, computed once per champion: continuous features
    keep their sorted values (KS) and the reference's quantile bins (PSI, as `psi_numeric`
    bins); others their category shares (PSI, as `psi_categorical`)."""

    continuous: bool
    shares: pd.Series  # reference share per bin (continuous) or per value
    values: np.ndarray | None = None  # sorted finite values (continuous)
    edges: np.ndarray | None = None  # inner quantile edges (continuous)


@dataclass
class Reference:
    features: dict[str, FeatureReference]
    scores: np.ndarray

    @classmethod
    def of(cls, reference: pd.DataFrame, limits: OnlineLimits) -> Reference:
        out = {}
        for name in monitored_features(reference, limits):
            ref = reference[name]
            if _is_continuous(ref, limits):
                values = np.sort(_finite(ref.to_numpy(float)))
                edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
                bins = _bins(ref.to_numpy(float), edges)
                out[name] = FeatureReference(True, bins.value_counts(normalize=True), values, edges)
            else:
                out[name] = FeatureReference(False, _keys(ref).value_counts(normalize=True))
        return cls(out, reference[SCORE].to_numpy(float))


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _bins(values: np.ndarray, edges: np.ndarray) -> pd.Series:
    """Quantile bin per value; a missing value has its own bin (-1)."""
    return pd.Series(
        np.where(np.isfinite(values), np.searchsorted(edges, values, side="right"), -1)
    )


def _keys(values: pd.Series) -> pd.Series:
    """Category keys: numbers as numbers (a count's values), others as text, null as a value."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float).fillna(-np.inf)
    return values.fillna("<null>").astype(str)


def _psi(p: pd.Series, current: pd.Series) -> float:
    """PSI of current keys against reference shares `p` (empty bins floored at EPS)."""
    if len(current) == 0:
        return float("nan")
    q = current.value_counts(normalize=True)
    keys = p.index.union(q.index)
    p = p.reindex(keys, fill_value=0).clip(lower=EPS).to_numpy()
    q = q.reindex(keys, fill_value=0).clip(lower=EPS).to_numpy()
    return float(np.sum((q - p) * np.log(q / p)))


def _is_continuous(ref: pd.Series, limits: OnlineLimits) -> bool:
    numeric = pd.api.types.is_numeric_dtype(ref) and not pd.api.types.is_bool_dtype(ref)
    return numeric and ref.nunique(dropna=True) >= limits.min_distinct_for_ks


def _feature(ref: FeatureReference, cur: pd.Series) -> tuple[float, float | None]:
    """(PSI, KS p-value or None) of one feature's window values."""
    if ref.continuous:
        values = pd.to_numeric(cur, errors="coerce").to_numpy(float)
        _, pvalue = ks(ref.values, values)
        return _psi(ref.shares, _bins(values, ref.edges)), pvalue
    if ref.shares.index.inferred_type in ("floating", "integer", "mixed-integer-float"):
        cur = pd.to_numeric(cur, errors="coerce")
    return _psi(ref.shares, _keys(cur)), None


def evaluate_window(
    reference: Reference, window: pd.DataFrame, limits: OnlineLimits, version: str
) -> WindowResult:
    """One window (`features_of` logged rows) against the champion's reference."""
    features = list(reference.features)
    missing = [f for f in features if f not in window.columns or window[f].isna().all()]
    result = WindowResult(len(window), False, "", missing=missing)
    for name in features:
        if name in missing:
            continue
        psi, pvalue = _feature(reference.features[name], window[name])
        result.psi[name] = psi
        drifts = psi > limits.psi_max
        if pvalue is not None:
            result.ks_pvalue[name] = pvalue
            drifts = drifts and pvalue < limits.ks_pvalue
        if drifts:
            result.drifted.append(name)
    result.drifted_share = len(result.drifted) / max(len(features) - len(missing), 1)
    scores = window.loc[window["model_version"].astype(str) == str(version), SCORE]
    if len(scores) >= limits.min_rows // 2:  # the champion's own answers (not a canary's)
        result.score_psi = psi_numeric(reference.scores, scores.to_numpy(float))
    reasons = []
    if result.drifted_share > limits.max_drifted_share:
        reasons.append(
            f"{len(result.drifted)} of {len(features) - len(missing)} features drift "
            f"({', '.join(result.drifted)})"
        )
    if missing:
        reasons.append(f"features missing in logged requests: {', '.join(missing)}")
    if result.score_psi is not None and result.score_psi > limits.prediction_psi_max:
        reasons.append(f"score PSI {result.score_psi:.3f} > {limits.prediction_psi_max}")
    result.breached = bool(reasons)
    result.reason = "; ".join(reasons) or "within thresholds"
    return result


# -- sustained breach -> one retraining per incident ------------------------------------------


@dataclass
class IncidentState:
    breached_run: int = 0  # breached windows in a row
    clean_run: int = 0  # clean windows in a row
    run_started: str | None = None  # when the current breached run's first window was evaluated
    incident: str | None = None  # the open incident's id (its first breached window's time)
    launched: bool = False  # the open incident asked for its retraining

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> IncidentState:
        return cls(**(data or {}))


@dataclass
class OnlineDecision:
    launch: bool
    reason: str
    incident: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def decide(
    state: IncidentState,
    result: WindowResult,
    now: dt.datetime,
    last_launch: dt.datetime | None,
    limits: OnlineLimits,
) -> tuple[IncidentState, OnlineDecision]:
    """The state after one evaluated window, and whether to launch the retraining now."""
    s = IncidentState(**state.to_dict())
    if not result.breached:
        s.breached_run, s.run_started = 0, None
        s.clean_run += 1
        if s.incident and s.clean_run >= limits.clean_windows_to_close:
            closed = s.incident
            s.incident, s.launched = None, False
            return s, OnlineDecision(
                False, f"incident {closed} closed after {s.clean_run} clean windows"
            )
        return s, OnlineDecision(False, "window within thresholds", s.incident)
    s.clean_run = 0
    s.breached_run += 1
    s.run_started = s.run_started or now.isoformat()
    if s.incident is None and s.breached_run >= limits.consecutive_windows:
        s.incident, s.launched = s.run_started, False
    if s.incident is None:
        return s, OnlineDecision(
            False, f"{s.breached_run} of {limits.consecutive_windows} breached windows in a row"
        )
    if s.launched:
        return s, OnlineDecision(False, f"incident {s.incident} already handled", s.incident)
    if last_launch is not None and now - last_launch < dt.timedelta(hours=limits.cooldown_hours):
        until = last_launch + dt.timedelta(hours=limits.cooldown_hours)
        return s, OnlineDecision(False, f"cooldown until {until:%Y-%m-%d %H:%M} UTC", s.incident)
    s.launched = True
    reason = (
        f"online drift: {s.breached_run} consecutive breached windows of the inference stream "
        f"since {s.incident} ({result.reason})"
    )
    return s, OnlineDecision(True, reason, s.incident, evidence(result))


def evidence(result: WindowResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "window_rows": result.rows,
        "drifted_features": result.drifted,
        "drifted_share": round(result.drifted_share, 4),
        "top_psi": result.top_psi(),
    }
    if result.score_psi is not None:
        out["score_psi"] = round(result.score_psi, 4)
    if result.missing:
        out["missing"] = result.missing
    return out
