"""The sensors' decisions on hand-made monitoring and prediction tables: noise is not a degradation,
a degradation asks once, a broken feed is not a reason to retrain, canaries promote or roll back."""

import datetime as dt

import numpy as np
import pandas as pd

from mlops_assets.monitoring.decisions import canary_decision, degradation_windows, retrain_decision
from mlops_assets.monitoring.statistics import ks, psi_categorical, psi_numeric

START = dt.date(2025, 6, 1)
NOW = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)


def _table(breaches: dict[str, set[int]], days: int = 20) -> pd.DataFrame:
    """Status rows for `days` days; `breaches[monitor]` = day offsets whose check failed."""
    rows = []
    for offset in range(days):
        day = START + dt.timedelta(days=offset)
        for monitor in ("performance", "feature_drift", "prediction_drift", "data_quality"):
            failed = offset in breaches.get(monitor, set())
            rows.append(
                {
                    "day": day,
                    "monitor": monitor,
                    "metric": "status",
                    "feature": None,
                    "model_version": None,
                    "value": float(failed),
                    "threshold": None,
                    "breached": failed,
                    "detail": "",
                }
            )
            if failed:
                rows.append(
                    {
                        "day": day,
                        "monitor": monitor,
                        "metric": "drifted_share",
                        "feature": None,
                        "model_version": None,
                        "value": 0.5,
                        "threshold": 0.2,
                        "breached": True,
                        "detail": "",
                    }
                )
    return pd.DataFrame(rows)


def _decide(table, handled=frozenset(), last_launch=None, now=NOW):
    return retrain_decision(table, 3, set(handled), last_launch, 24, now)


def test_no_drift_no_retraining():
    decision = _decide(_table({}))
    assert not decision.launch and "longest run: 0" in decision.reason


def test_a_drift_on_one_or_two_days_is_noise():
    decision = _decide(_table({"feature_drift": {4, 9, 10}, "prediction_drift": {15}}))
    assert not decision.launch and "longest run: 2" in decision.reason


def test_a_degradation_window_asks_once_with_its_evidence():
    table = _table({"feature_drift": set(range(10, 20)), "prediction_drift": {11, 12}})
    decision = _decide(table)
    assert decision.launch
    assert decision.window.start == START + dt.timedelta(days=10) and decision.window.days == 10
    assert "feature_drift, prediction_drift failed on 10 consecutive" in decision.reason
    assert decision.evidence  # the failing numbers travel with the run
    again = _decide(table, handled={decision.window.key}, last_launch=NOW)
    assert not again.launch and "already handled" in again.reason


def test_a_new_window_inside_the_cooldown_waits():
    table = _table({"feature_drift": {3, 4, 5, 10, 11, 12}})
    first = degradation_windows(table)[0].key
    decision = _decide(table, handled={first}, last_launch=NOW - dt.timedelta(hours=2))
    assert not decision.launch and "cooldown until" in decision.reason
    later = _decide(table, handled={first}, last_launch=NOW - dt.timedelta(hours=30))
    assert later.launch and later.window.start == START + dt.timedelta(days=10)


def test_days_with_broken_data_do_not_count_as_degradation():
    table = _table({"feature_drift": set(range(5, 12)), "data_quality": {7}})
    windows = degradation_windows(table)
    assert [(w.start.day, w.days) for w in windows] == [(6, 2), (9, 4)]
    decision = _decide(_table({"feature_drift": {5, 6, 7}, "data_quality": {6}}))
    assert not decision.launch


def _canary(champion_auc_noise: float, challenger_auc_noise: float, n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for version, noise in (("1", champion_auc_noise), ("2", challenger_auc_noise)):
        actual = rng.integers(0, 2, n)
        score = np.clip(actual * 0.3 + 0.35 + rng.normal(0, noise, n), 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "model_version": version,
                    "score": score,
                    "actual": actual,
                    "scored_at": NOW + dt.timedelta(hours=1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_canary_promotes_a_better_challenger_and_rolls_back_a_worse_one():
    better = canary_decision(_canary(0.4, 0.1), "1", "2", NOW, 300, 0.0)
    assert better.action == "promote"
    assert better.numbers["challenger_roc_auc"] > better.numbers["champion_roc_auc"]
    worse = canary_decision(_canary(0.1, 0.4), "1", "2", NOW, 300, 0.0)
    assert worse.action == "rollback" and "trails champion" in worse.reason


def test_canary_waits_for_enough_labelled_traffic_since_it_started():
    frame = _canary(0.4, 0.1)
    frame.loc[frame["model_version"] == "2", "actual"] = np.nan  # labels not in yet
    assert canary_decision(frame, "1", "2", NOW, 300, 0.0).action == "wait"
    older = _canary(0.4, 0.1).assign(scored_at=NOW - dt.timedelta(days=1))
    decision = canary_decision(older, "1", "2", NOW, 300, 0.0)
    assert decision.action == "wait" and "champion 0, challenger 0" in decision.reason


def test_canary_counts_rows_scored_since_it_started_whatever_day_they_are_for():
    # A replayed (or backfilled) day: valid for a moment before the canary started, scored after.
    replayed = _canary(0.4, 0.1).assign(prediction_timestamp=NOW - dt.timedelta(days=40))
    assert canary_decision(replayed, "1", "2", NOW, 300, 0.0).action == "promote"


def test_drift_statistics_see_a_shift_and_not_its_absence():
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 5000)
    assert psi_numeric(reference, rng.normal(0, 1, 5000)) < 0.05
    assert psi_numeric(reference, rng.normal(1, 1, 5000)) > 0.3
    assert ks(reference, rng.normal(1, 1, 5000))[1] < 1e-6
    cats = pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.6, 0.3, 0.1]))
    assert (
        psi_categorical(cats, pd.Series(rng.choice(["a", "b", "c"], 5000, p=[0.6, 0.3, 0.1])))
        < 0.02
    )
    assert (
        psi_categorical(cats, pd.Series(rng.choice(["a", "b", "d"], 5000, p=[0.3, 0.3, 0.4]))) > 0.5
    )
