"""The promotion gate. A new version becomes `challenger` only if it clears the config's absolute
thresholds (ROC AUC, PR AUC, Brier and, when configured, recall at a target precision) and is not
worse than the current `champion` by more than the configured margin on the same holdout (the new
dataset's test split, both models scored on it) in the config's `compare_on` metric (ROC AUC, PR
AUC or expected cost at each model's own decision threshold). The first version to clear the
thresholds becomes `champion`. Every decision and alias move goes to the decision log."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_assets.model_config import ModelConfig, Thresholds
from mlops_assets.settings import Settings
from mlops_assets.training.decisions import record, set_alias
from mlops_assets.training.registry import (
    CHALLENGER,
    CHAMPION,
    Registry,
    alias_version,
    client,
    load_model,
)


@dataclass
class GateDecision:
    model: str
    version: str
    outcome: str  # champion | challenger | rejected
    reasons: list[str]
    metrics: dict[str, float]
    champion_before: str | None
    champion_roc_auc_on_holdout: float | None = None
    candidate_roc_auc_on_holdout: float | None = None
    # The metric the champion comparison used (thresholds.compare_on) and both values of it.
    compare_on: str | None = None
    champion_on_holdout: float | None = None
    candidate_on_holdout: float | None = None

    def metadata(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "reasons"} | {
            "reasons": "; ".join(self.reasons)
        }


# How each compare_on metric is named in the metrics, and whether higher is better.
COMPARED = {
    "roc_auc": ("roc_auc", "ROC AUC", True),
    "pr_auc": ("pr_auc", "PR AUC", True),
    "expected_cost": ("expected_cost_per_1000", "expected cost per 1000 rows", False),
}


def threshold_reasons(metrics: dict[str, float], limits: Thresholds) -> list[str]:
    """Why the candidate's test metrics fail the config's absolute thresholds (empty: they pass)."""
    reasons = []
    if metrics.get("roc_auc", 0.0) < limits.min_roc_auc:
        reasons.append(f"ROC AUC {metrics.get('roc_auc', 0):.4f} < {limits.min_roc_auc}")
    if metrics.get("pr_auc", 0.0) < limits.min_pr_auc:
        reasons.append(f"PR AUC {metrics.get('pr_auc', 0):.4f} < {limits.min_pr_auc}")
    if metrics.get("brier", 1.0) > limits.max_brier:
        reasons.append(f"Brier {metrics.get('brier', 1):.4f} > {limits.max_brier}")
    target = limits.min_recall_at_precision
    if target is not None:
        recall = metrics.get("recall_at_precision", 0.0)
        if recall < target.min_recall:
            reasons.append(
                f"recall at precision {target.precision} is {recall:.4f} < {target.min_recall}"
            )
    return reasons


def comparison_reason(
    champion_value: float, candidate_value: float, champion: str, limits: Thresholds
) -> str | None:
    """Why the candidate trails the champion in `limits.compare_on` by more than the margin on
    the same holdout (None: it does not). For expected cost the margin is a share of the
    champion's cost."""
    _, label, higher_is_better = COMPARED[limits.compare_on]
    margin = limits.max_regression_vs_champion
    if higher_is_better:
        if candidate_value >= champion_value - margin:
            return None
        return (
            f"{label} {candidate_value:.4f} trails champion v{champion} ({champion_value:.4f}) "
            f"on the same holdout by more than {margin}"
        )
    if candidate_value <= champion_value * (1 + margin):
        return None
    return (
        f"{label} {candidate_value:.4f} exceeds champion v{champion}'s ({champion_value:.4f}) on "
        f"the same holdout by more than {margin:.0%}"
    )


def _holdout_metrics(
    registry: Registry, settings: Settings, config: ModelConfig, versions: list[str], dvc_md5: str
) -> list[dict[str, float]]:
    """Each version on the test split of dataset `dvc_md5`: ROC AUC, PR AUC and expected cost
    per 1000 rows at the version's own decision threshold."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from mlops_assets.datasets.versioning import pull
    from mlops_assets.training.estimators import dataset_schema, feature_frame, read_split
    from mlops_assets.training.thresholds import decision_threshold, expected_cost_per_1000

    limits = config.thresholds
    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        folder = pull(settings, dvc_md5, Path(tmp) / "dataset")
        test = read_split(folder, "test")
        X = feature_frame(test, dataset_schema(folder)["features"])
        y = test[config.label].to_numpy()
        results = []
        for v in versions:
            model = load_model(registry, config.registered_model, v)
            scores = model.predict_proba(X)[:, 1]
            cost = expected_cost_per_1000(
                y,
                scores,
                decision_threshold(config, model),
                limits.cost_false_positive,
                limits.cost_false_negative,
            )
            results.append(
                {
                    "roc_auc": float(roc_auc_score(y, scores)),
                    "pr_auc": float(average_precision_score(y, scores)),
                    "expected_cost_per_1000": cost,
                }
            )
        return results


def gate(
    registry: Registry, settings: Settings, config: ModelConfig, version: str, actor: str
) -> GateDecision:
    """Decide on `version`, move aliases accordingly, record everything. `settings` locate the
    DVC cache the holdout is pulled through."""
    mlflow_client = client(registry)
    name = config.registered_model
    model_version = mlflow_client.get_model_version(name, version)
    run = mlflow_client.get_run(model_version.run_id)
    metrics = {
        k.removeprefix("model_test_"): v
        for k, v in run.data.metrics.items()
        if k.startswith("model_test_")
    }
    limits = config.thresholds
    reasons = threshold_reasons(metrics, limits)

    champion = alias_version(mlflow_client, name, CHAMPION)
    decision = GateDecision(name, version, "rejected", reasons, metrics, champion)
    if champion is not None and champion != version and not reasons:
        champ, cand = _holdout_metrics(
            registry, settings, config, [champion, version], run.data.tags["dvc_md5"]
        )
        key = COMPARED[limits.compare_on][0]
        decision.champion_roc_auc_on_holdout = champ["roc_auc"]
        decision.candidate_roc_auc_on_holdout = cand["roc_auc"]
        decision.compare_on = limits.compare_on
        decision.champion_on_holdout, decision.candidate_on_holdout = champ[key], cand[key]
        behind = comparison_reason(champ[key], cand[key], champion, limits)
        if behind:
            reasons.append(behind)
    if reasons:
        decision.outcome = "rejected"
    elif champion is None:
        decision.outcome = CHAMPION
        reasons.append("first version to clear the thresholds")
    else:
        decision.outcome = CHALLENGER
        reasons.append(
            f"clears the thresholds and is within the margin of champion v{champion} on "
            f"{COMPARED[limits.compare_on][1]}"
        )
    reason = "; ".join(reasons)
    record(registry, name, version, "gate", decision.outcome, actor, reason, metrics)
    mlflow_client.set_model_version_tag(name, version, "gate_decision", decision.outcome)
    mlflow_client.set_model_version_tag(name, version, "gate_reason", reason)
    if decision.outcome in (CHAMPION, CHALLENGER):
        set_alias(registry, name, decision.outcome, version, actor, reason)
    return decision
