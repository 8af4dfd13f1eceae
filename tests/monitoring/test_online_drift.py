"""Online drift's pure core: windows of logged requests against a reference, and the decision to
retrain on a sustained breach (once per incident, under the cooldown, incidents that close)."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.model_config import model_configs
from mlops_assets.monitoring.online_drift import (
    IncidentState,
    OnlineLimits,
    Reference,
    WindowResult,
    decide,
    evaluate_window,
    features_of,
    slide,
)
from mlops_assets.monitoring.statistics import psi_categorical, psi_numeric

CONFIG = model_configs()["churn"]
LIMITS = OnlineLimits.of(CONFIG.monitoring)
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def _population(n: int, seed: int, drift: bool = False) -> pd.DataFrame:
    """Churn-like features: continuous amounts, counts, a category, an excluded cumulative one,
    and a score that depends on them. `drift`: spend x4, half on a new channel."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "spend_30d_usd": rng.gamma(2, 30, n) * (4 if drift else 1),
            "avg_discount_pct_90d": rng.random(n) * 25,
            "order_count_30d": rng.poisson(1.5, n),
            "ticket_count_30d": rng.poisson(0.3, n),
            "plan": rng.choice(["free", "basic", "premium"], n),
            "acquisition_channel": rng.choice(["organic", "paid_search", "social"], n),
            "tenure_days": rng.integers(0, 700, n) + (5000 if drift else 0),  # drift_exclude
        }
    )
    if drift:
        frame.loc[frame.index % 2 == 0, "acquisition_channel"] = "tiktok"
    logit = -1 + 0.01 * frame["spend_30d_usd"] - 0.5 * frame["order_count_30d"]
    frame["__score"] = 1 / (1 + np.exp(-logit))
    return frame


FRAME = _population(20_000, 0)
REFERENCE = Reference.of(FRAME, LIMITS)
VERSION = "3"


def _logged(frame: pd.DataFrame, start: int = 0, version: str = VERSION) -> pd.DataFrame:
    """`frame` as inference log rows (features JSON, score, version, requested_at)."""
    features = frame.drop(columns="__score")
    return pd.DataFrame(
        {
            "features": [json.dumps(r) for r in features.to_dict("records")],
            "score": frame["__score"].to_numpy(),
            "model_version": version,
            "requested_at": pd.to_datetime(
                np.arange(start, start + len(frame)), unit="s", utc=True
            ),
        }
    )


def _window(seed: int, drift: bool = False, n: int = LIMITS.window_rows) -> WindowResult:
    return evaluate_window(
        REFERENCE, features_of(_logged(_population(n, seed, drift))), LIMITS, VERSION
    )


def test_a_clean_window_is_within_thresholds():
    result = _window(1)
    assert not result.breached and result.reason == "within thresholds"
    assert "tenure_days" not in result.psi  # drift_exclude, as the daily monitor
    assert set(result.ks_pvalue) == {"spend_30d_usd", "avg_discount_pct_90d"}  # counts: PSI only
    assert result.score_psi is not None and result.score_psi < 0.05


def test_the_psi_is_the_daily_monitors():
    window = features_of(_logged(_population(2000, 4, drift=True)))
    result = evaluate_window(REFERENCE, window, LIMITS, VERSION)
    spend = psi_numeric(FRAME["spend_30d_usd"].to_numpy(), window["spend_30d_usd"].to_numpy(float))
    channel = psi_categorical(FRAME["acquisition_channel"], window["acquisition_channel"])
    assert result.psi["spend_30d_usd"] == pytest.approx(spend)
    assert result.psi["acquisition_channel"] == pytest.approx(channel)


def test_a_drifted_window_breaches_with_its_features():
    result = _window(2, drift=True)
    assert result.breached
    assert {"spend_30d_usd", "acquisition_channel"} <= set(result.drifted)
    assert "score PSI" in result.reason and result.score_psi > LIMITS.prediction_psi_max
    assert next(iter(result.top_psi())) in {"spend_30d_usd", "acquisition_channel"}


def test_a_missing_feature_breaches():
    window = features_of(_logged(_population(2000, 3))).drop(columns="plan")
    result = evaluate_window(REFERENCE, window, LIMITS, VERSION)
    assert result.breached and result.missing == ["plan"]


@pytest.mark.slow
def test_no_false_alarm_over_a_thousand_clean_windows():
    """1,000 clean windows (bootstrap draws of a clean log of 40,000 requests) stepping through
    the decision: not one breached window, no incident, no launch."""
    log = features_of(_logged(_population(40_000, 7)))
    rng = np.random.default_rng(11)
    state, breached, launches = IncidentState(), 0, 0
    for i in range(1000):
        window = log.iloc[rng.integers(0, len(log), LIMITS.window_rows)]
        result = evaluate_window(REFERENCE, window, LIMITS, VERSION)
        breached += result.breached
        state, decision = decide(state, result, NOW + dt.timedelta(seconds=2 * i), None, LIMITS)
        launches += decision.launch
    assert breached == 0 and launches == 0 and state.incident is None


def _result(breached: bool) -> WindowResult:
    return WindowResult(2000, breached, "spend drifts" if breached else "within thresholds")


def _run(pattern: str, state=None, last_launch=None, start=NOW):
    """Step the decision over windows ('B' breached, '.' clean), 2 s apart."""
    state = state or IncidentState()
    decisions = []
    for i, mark in enumerate(pattern):
        now = start + dt.timedelta(seconds=2 * i)
        state, decision = decide(state, _result(mark == "B"), now, last_launch, LIMITS)
        decisions.append(decision)
    return state, decisions


def test_a_sustained_breach_launches_once_per_incident():
    assert LIMITS.consecutive_windows == 3
    state, decisions = _run("BB.BB.B")  # never three in a row: noise
    assert not any(d.launch for d in decisions) and state.incident is None
    state, decisions = _run("BBBBBBBB")
    launches = [i for i, d in enumerate(decisions) if d.launch]
    assert launches == [2]
    assert decisions[2].incident == NOW.isoformat()  # named by its first breached window
    assert "3 consecutive breached windows" in decisions[2].reason
    assert all("already handled" in d.reason for d in decisions[3:])
    # A few clean windows inside the incident do not end it: a new breach is the same incident.
    state, decisions = _run("...BBBB", state)
    assert not any(d.launch for d in decisions) and state.incident == NOW.isoformat()


def test_an_incident_closes_after_clean_windows_and_a_new_one_launches_again():
    state, _ = _run("BBB")
    assert LIMITS.clean_windows_to_close == 5
    state, decisions = _run(".....", state)
    assert state.incident is None and "closed after 5 clean windows" in decisions[-1].reason
    later = NOW + dt.timedelta(hours=30)
    state, decisions = _run("BBB", state, last_launch=NOW, start=later)
    assert decisions[-1].launch and decisions[-1].incident == later.isoformat()


def test_the_cooldown_delays_the_launch_until_it_ends():
    last = NOW - dt.timedelta(hours=LIMITS.cooldown_hours) + dt.timedelta(seconds=5)
    _, decisions = _run("BBBBB", last_launch=last)  # windows 2 s apart: the 4th is past it
    assert [d.launch for d in decisions] == [False, False, False, True, False]
    assert "cooldown until" in decisions[2].reason
    assert "already handled" in decisions[4].reason


def test_the_window_keeps_the_newest_rows():
    window = slide(_logged(_population(0, 1)), _logged(_population(1500, 1), start=0), 2000)
    window = slide(window, _logged(_population(1000, 2), start=1500), 2000)
    assert len(window) == 2000
    assert window["requested_at"].is_monotonic_increasing
    assert window["requested_at"].iloc[0] == pd.Timestamp(500, unit="s", tz="UTC")


@pytest.mark.parametrize("field", ["psi_max", "ks_pvalue", "prediction_psi_max"])
def test_online_thresholds_default_to_the_daily_ones(field):
    assert getattr(LIMITS, field) == getattr(CONFIG.monitoring, field)
    custom = CONFIG.monitoring.model_copy(
        update={"online": CONFIG.monitoring.online.model_copy(update={field: 0.005})}
    )
    assert getattr(OnlineLimits.of(custom), field) == 0.005
