"""Models as configuration for imbalanced labels: typed params per algorithm, the tuning grid
checked against them, the imbalanced-data metrics against scikit-learn and hand-counted cases,
the cost-minimizing threshold against a brute force, and the gate's pure decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from sklearn.metrics import confusion_matrix, precision_recall_curve

from mlops_assets.model_config import (
    CONFIG_DIR,
    LogisticRegressionParams,
    ModelConfig,
    Thresholds,
    model_configs,
)
from mlops_assets.training.estimators import build_estimator, evaluate
from mlops_assets.training.gate import comparison_reason, threshold_reasons
from mlops_assets.training.registry import MODEL_FILE, load_estimator, save_estimator
from mlops_assets.training.thresholds import (
    THRESHOLD_ATTRIBUTE,
    choose_threshold,
    cost_minimizing_threshold,
    decision_threshold,
    expected_cost_per_1000,
    recall_at_precision,
)

CHURN = yaml.safe_load((CONFIG_DIR / "churn.yaml").read_text())


def _config(**changes) -> ModelConfig:
    return ModelConfig.model_validate({**CHURN, **changes})


# -- typed config --------------------------------------------------------------------------------


def test_churn_keeps_its_algorithm_params_and_grid():
    churn = model_configs()["churn"]
    assert churn.algorithm == "hist_gradient_boosting"
    assert churn.params.max_leaf_nodes == 31 and churn.params.learning_rate == 0.08
    assert len(churn.tuning.candidates(churn.params)) == 6
    assert churn.decision_threshold == 0.5 and churn.thresholds.compare_on == "roc_auc"
    # What the pipeline receives round-trips to the same config.
    assert ModelConfig.model_validate_json(churn.model_dump_json()) == churn


def test_a_logistic_regression_config_has_its_own_params_and_grid():
    config = _config(
        algorithm="logistic_regression",
        params={"C": 0.5, "class_weight": "balanced"},
        tuning={"C": [0.1, 1.0, 10.0]},
    )
    assert isinstance(config.params, LogisticRegressionParams)
    assert [p.C for p in config.tuning.candidates(config.params)] == [0.1, 1.0, 10.0]
    assert {p.class_weight for p in config.tuning.candidates(config.params)} == {"balanced"}
    assert ModelConfig.model_validate_json(config.model_dump_json()) == config


def test_a_param_of_another_algorithm_is_an_error_naming_the_field():
    with pytest.raises(ValidationError) as err:
        _config(algorithm="logistic_regression", params={"C": 1.0, "max_leaf_nodes": 31})
    assert "params.logistic_regression.max_leaf_nodes" in str(err.value)
    assert "Extra inputs are not permitted" in str(err.value)
    with pytest.raises(ValidationError, match=r"params.hist_gradient_boosting.C\b"):
        _config(params={"C": 1.0})


def test_an_unknown_tuning_field_is_an_error_naming_it():
    with pytest.raises(ValidationError, match=r"tuning.C: hist_gradient_boosting has no parameter"):
        _config(tuning={"C": [0.1, 1.0]})
    # churn's grid under a logistic regression: learning_rate is not one of its parameters.
    with pytest.raises(ValidationError, match=r"tuning.learning_rate: logistic_regression"):
        _config(algorithm="logistic_regression", params={})
    with pytest.raises(ValidationError, match=r"tuning: a value does not fit"):
        _config(tuning={"max_leaf_nodes": ["many"]})


def test_imbalanced_gate_options_and_auto_threshold_validate():
    config = _config(
        decision_threshold="auto",
        thresholds={
            "min_recall_at_precision": {"precision": 0.8, "min_recall": 0.6},
            "cost_false_positive": 1,
            "cost_false_negative": 25,
            "compare_on": "expected_cost",
        },
    )
    assert config.decision_threshold == "auto"
    assert config.thresholds.min_recall_at_precision.precision == 0.8
    with pytest.raises(ValidationError, match="compare_on"):
        _config(thresholds={"compare_on": "accuracy"})
    with pytest.raises(ValidationError, match="decision_threshold"):
        _config(decision_threshold="best")


# -- the metrics -------------------------------------------------------------------------------


def _imbalanced(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    scores = np.clip(rng.normal(0.2 + 0.35 * y, 0.15), 0, 1).round(2)  # ties on purpose
    return y, scores


def test_recall_at_precision_by_hand():
    y = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    # thresholds 0.9, 0.8: precision 1, recall 1/3, 2/3; 0.7: 2/3; 0.6: 3/4, recall 1.
    assert recall_at_precision(y, scores, 1.0) == pytest.approx(2 / 3)
    assert recall_at_precision(y, scores, 0.75) == 1.0
    assert recall_at_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.9) == 0.0
    assert recall_at_precision(np.array([0, 0]), np.array([0.9, 0.1]), 0.5) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", [0.3, 0.5, 0.8, 0.95])
def test_recall_at_precision_equals_sklearns_curve(seed, target):
    y, scores = _imbalanced(3000, seed)
    precision, recall, _ = precision_recall_curve(y, scores)
    expected = float(recall[precision >= target].max()) if (precision >= target).any() else 0.0
    assert recall_at_precision(y, scores, target) == pytest.approx(expected)


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.45, 0.9])
def test_expected_cost_equals_the_confusion_matrix(threshold):
    y, scores = _imbalanced(2000, 3)
    _, fp, fn, _ = confusion_matrix(y, scores >= threshold, labels=[0, 1]).ravel()
    expected = 1000 * (2.0 * fp + 30.0 * fn) / len(y)
    assert expected_cost_per_1000(y, scores, threshold, 2.0, 30.0) == pytest.approx(expected)


@pytest.mark.parametrize(("fp_cost", "fn_cost"), [(1, 1), (1, 20), (5, 1), (1, 0)])
def test_the_auto_threshold_minimises_cost_like_a_brute_force(fp_cost, fn_cost):
    y, scores = _imbalanced(2000, 4)
    chosen = cost_minimizing_threshold(y, scores, fp_cost, fn_cost)
    grid = np.r_[np.unique(scores), np.nextafter(scores.max(), 2)]
    brute = min(expected_cost_per_1000(y, scores, t, fp_cost, fn_cost) for t in grid)
    assert expected_cost_per_1000(y, scores, chosen, fp_cost, fn_cost) == pytest.approx(brute)
    if fn_cost == 0:  # missing a positive costs nothing: alert on none
        assert (scores >= chosen).sum() == 0


def test_costly_misses_lower_the_auto_threshold():
    y, scores = _imbalanced(2000, 5)
    cheap_misses = cost_minimizing_threshold(y, scores, 1, 1)
    costly_misses = cost_minimizing_threshold(y, scores, 1, 50)
    assert costly_misses < cheap_misses


def test_choose_and_read_back_the_threshold():
    y, scores = _imbalanced(500, 6)
    fixed = _config(decision_threshold=0.4)
    auto = _config(decision_threshold="auto", thresholds={"cost_false_negative": 10})
    assert choose_threshold(fixed, y, scores) == 0.4
    chosen = choose_threshold(auto, y, scores)
    assert chosen == cost_minimizing_threshold(y, scores, 1.0, 10.0)

    class Model:
        pass

    model = Model()
    assert decision_threshold(fixed, model) == 0.4  # a fixed number needs nothing on the model
    with pytest.raises(ValueError, match="retrain"):
        decision_threshold(auto, model)
    setattr(model, THRESHOLD_ATTRIBUTE, chosen)
    assert decision_threshold(auto, model) == chosen


def test_evaluate_records_the_imbalanced_metrics():
    y, scores = _imbalanced(1000, 7)
    limits = Thresholds(
        min_recall_at_precision={"precision": 0.5, "min_recall": 0.1},
        cost_false_positive=1,
        cost_false_negative=20,
    )
    metrics = evaluate(y, scores, 0.35, limits)
    assert metrics["decision_threshold"] == 0.35
    assert metrics["recall_at_precision"] == recall_at_precision(y, scores, 0.5)
    assert metrics["expected_cost_per_1000"] == expected_cost_per_1000(y, scores, 0.35, 1, 20)
    assert {"roc_auc", "pr_auc", "brier"} <= set(metrics)
    assert "recall_at_precision" not in evaluate(y, scores, 0.35, Thresholds())


# -- the gate's decisions -----------------------------------------------------------------------


def test_the_gate_rejects_a_candidate_below_the_recall_at_precision():
    limits = Thresholds(min_recall_at_precision={"precision": 0.8, "min_recall": 0.6})
    good = {"roc_auc": 0.9, "pr_auc": 0.5, "brier": 0.05}
    assert threshold_reasons(good | {"recall_at_precision": 0.65}, limits) == []
    reasons = threshold_reasons(good | {"recall_at_precision": 0.41}, limits)
    assert reasons == ["recall at precision 0.8 is 0.4100 < 0.6"]
    # Not measured at all is not a pass.
    assert threshold_reasons(good, limits) == ["recall at precision 0.8 is 0.0000 < 0.6"]
    assert threshold_reasons(good, Thresholds()) == []


def test_the_champion_comparison_uses_the_configured_metric():
    auc = Thresholds(max_regression_vs_champion=0.01)
    assert comparison_reason(0.80, 0.795, "1", auc) is None
    assert "ROC AUC 0.7800 trails champion v1" in comparison_reason(0.80, 0.78, "1", auc)
    pr = Thresholds(compare_on="pr_auc", max_regression_vs_champion=0.02)
    assert "PR AUC" in comparison_reason(0.40, 0.37, "3", pr)
    cost = Thresholds(compare_on="expected_cost", max_regression_vs_champion=0.1)
    assert comparison_reason(100.0, 109.0, "2", cost) is None  # within 10% more cost
    assert comparison_reason(100.0, 80.0, "2", cost) is None  # cheaper is better
    reason = comparison_reason(100.0, 111.0, "2", cost)
    assert reason.startswith("expected cost per 1000 rows 111.0000 exceeds champion v2's")


# -- the logistic regression estimator ------------------------------------------------------------


def test_a_logistic_regression_with_class_weights_round_trips_through_skops(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame(
        {
            "amount": rng.gamma(2, 50, n),
            "count": rng.integers(0, 6, n).astype(float),
            "plan": rng.choice(["free", "basic", "premium"], n),
            "segment": rng.choice(["new", "loyal", None], n),
        }
    )
    X.loc[::17, "amount"] = np.nan
    y = ((X["count"] > 4) & (rng.random(n) < 0.6)).astype(int)
    config = _config(
        algorithm="logistic_regression",
        params={"C": 0.3, "class_weight": "balanced"},
        tuning={},
    )
    model = build_estimator(config, X).fit(X, y)
    clf = model.named_steps["clf"]
    assert type(clf).__name__ == "LogisticRegression"
    assert clf.C == 0.3 and clf.class_weight == "balanced"
    setattr(model, THRESHOLD_ATTRIBUTE, 0.37)
    save_estimator(model, tmp_path / MODEL_FILE)
    loaded = load_estimator(tmp_path / MODEL_FILE)  # the trusted types suffice
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert getattr(loaded, THRESHOLD_ATTRIBUTE) == 0.37
    from mlops_assets.serving.compiled import CompiledModel

    assert CompiledModel.compile(loaded) is None  # trees only: serving scores it in sklearn
