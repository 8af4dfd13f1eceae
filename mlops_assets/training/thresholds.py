"""Metrics for imbalanced labels and the decision threshold (pure functions on arrays).

Every function sees the model's scores and the 0/1 labels of one split. A row is predicted
positive when its score is at or above the threshold, as the label engine and the batch scorer
cut it. `decision_threshold(config, model)` is the one place that says which threshold a model's
scores are cut at: the config's number, or (`auto`) the one chosen on the validation split at
training time and stored on the fitted estimator (`THRESHOLD_ATTRIBUTE`, saved with it in MLflow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlops_assets.model_config import ModelConfig, Thresholds

# The fitted estimator's attribute that carries the threshold chosen at training time.
THRESHOLD_ATTRIBUTE = "decision_threshold_"


def confusion_by_threshold(
    y_true: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, true positives, false positives) for every distinct score used as
    the threshold: at thresholds[i], rows with score >= thresholds[i] are predicted positive."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each tie group
    tp = np.cumsum(y)[last_of_each]
    fp = (last_of_each + 1) - tp
    return s[last_of_each], tp, fp


def recall_at_precision(y_true: np.ndarray, scores: np.ndarray, precision: float) -> float:
    """The highest recall of any threshold whose precision is at least `precision` (0.0 when no
    threshold reaches it, or there are no positives)."""
    _, tp, fp = confusion_by_threshold(y_true, scores)
    positives = int(np.sum(np.asarray(y_true).astype(int)))
    if positives == 0:
        return 0.0
    reached = tp / (tp + fp) >= precision
    return float(tp[reached].max() / positives) if reached.any() else 0.0


def expected_cost_per_1000(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    cost_false_positive: float,
    cost_false_negative: float,
) -> float:
    """The cost of the errors at `threshold`, per 1000 rows."""
    y = np.asarray(y_true).astype(int)
    predicted = np.asarray(scores) >= threshold
    false_positives = int(np.sum(predicted & (y == 0)))
    false_negatives = int(np.sum(~predicted & (y == 1)))
    cost = cost_false_positive * false_positives + cost_false_negative * false_negatives
    return 1000.0 * cost / len(y)


def cost_minimizing_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    cost_false_positive: float,
    cost_false_negative: float,
) -> float:
    """The threshold with the lowest expected cost on these rows (ties: the highest threshold,
    fewest alerts). Candidates are the distinct scores, and one above them all (predict none)."""
    thresholds, tp, fp = confusion_by_threshold(y_true, scores)
    positives = int(np.sum(np.asarray(y_true).astype(int)))
    costs = cost_false_positive * fp + cost_false_negative * (positives - tp)
    none_cost = cost_false_negative * positives
    best = int(np.argmin(costs))  # first minimum = highest threshold (descending order)
    if none_cost <= costs[best]:
        return float(min(np.nextafter(thresholds[0], np.inf), 1.0))
    return float(thresholds[best])


def choose_threshold(config: ModelConfig, y_true: np.ndarray, scores: np.ndarray) -> float:
    """The config's fixed threshold, or (`auto`) the cost-minimizing one on these (validation)
    rows."""
    if config.decision_threshold != "auto":
        return float(config.decision_threshold)
    limits = config.thresholds
    return cost_minimizing_threshold(
        y_true, scores, limits.cost_false_positive, limits.cost_false_negative
    )


def decision_threshold(config: ModelConfig, model: Any) -> float:
    """The threshold `model`'s scores are cut at: the config's number, or (`auto`) the one chosen
    when the model was trained."""
    if config.decision_threshold != "auto":
        return float(config.decision_threshold)
    chosen = getattr(model, THRESHOLD_ATTRIBUTE, None)
    if chosen is None:
        raise ValueError(
            f"{config.name}: decision_threshold is auto but this model version carries no "
            "threshold chosen at training time; retrain it"
        )
    return float(chosen)


def imbalance_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, limits: Thresholds
) -> dict[str, float]:
    """What the gate and MLflow record beside the usual metrics: the threshold, the expected
    cost per 1000 rows there, and (when configured) the recall at the target precision."""
    metrics = {
        "decision_threshold": float(threshold),
        "expected_cost_per_1000": expected_cost_per_1000(
            y_true, scores, threshold, limits.cost_false_positive, limits.cost_false_negative
        ),
    }
    target = limits.min_recall_at_precision
    if target is not None:
        metrics["recall_at_precision"] = recall_at_precision(y_true, scores, target.precision)
    return metrics
