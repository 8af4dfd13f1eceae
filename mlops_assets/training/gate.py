"""The promotion gate. A new version becomes `challenger` only if it clears the config's absolute
thresholds and is not worse than the current `champion` by more than the configured margin on the
same holdout (the new dataset's test split, both models scored on it). The first version to clear
the thresholds becomes `champion`. Every decision and alias move goes to the decision log."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_assets.model_config import ModelConfig
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

    def metadata(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "reasons"} | {
            "reasons": "; ".join(self.reasons)
        }


def _holdout_auc(
    registry: Registry, settings: Settings, config: ModelConfig, versions: list[str], dvc_md5: str
) -> list[float]:
    """ROC AUC of each version on the test split of dataset `dvc_md5`."""
    from sklearn.metrics import roc_auc_score

    from mlops_assets.datasets.versioning import pull
    from mlops_assets.training.estimators import dataset_schema, feature_frame, read_split

    with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
        folder = pull(settings, dvc_md5, Path(tmp) / "dataset")
        test = read_split(folder, "test")
        X = feature_frame(test, dataset_schema(folder)["features"])
        y = test[config.label].to_numpy()
        return [
            float(
                roc_auc_score(
                    y, load_model(registry, config.registered_model, v).predict_proba(X)[:, 1]
                )
            )
            for v in versions
        ]


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
    reasons = []
    if metrics.get("roc_auc", 0.0) < limits.min_roc_auc:
        reasons.append(f"ROC AUC {metrics.get('roc_auc', 0):.4f} < {limits.min_roc_auc}")
    if metrics.get("pr_auc", 0.0) < limits.min_pr_auc:
        reasons.append(f"PR AUC {metrics.get('pr_auc', 0):.4f} < {limits.min_pr_auc}")
    if metrics.get("brier", 1.0) > limits.max_brier:
        reasons.append(f"Brier {metrics.get('brier', 1):.4f} > {limits.max_brier}")

    champion = alias_version(mlflow_client, name, CHAMPION)
    decision = GateDecision(name, version, "rejected", reasons, metrics, champion)
    if champion is not None and champion != version and not reasons:
        champ_auc, cand_auc = _holdout_auc(
            registry, settings, config, [champion, version], run.data.tags["dvc_md5"]
        )
        decision.champion_roc_auc_on_holdout, decision.candidate_roc_auc_on_holdout = (
            champ_auc,
            cand_auc,
        )
        if cand_auc < champ_auc - limits.max_regression_vs_champion:
            reasons.append(
                f"ROC AUC {cand_auc:.4f} trails champion v{champion} ({champ_auc:.4f}) on the same holdout "
                f"by more than {limits.max_regression_vs_champion}"
            )
    if reasons:
        decision.outcome = "rejected"
    elif champion is None:
        decision.outcome = CHAMPION
        reasons.append("first version to clear the thresholds")
    else:
        decision.outcome = CHALLENGER
        reasons.append(f"clears the thresholds and is within the margin of champion v{champion}")
    reason = "; ".join(reasons)
    record(registry, name, version, "gate", decision.outcome, actor, reason, metrics)
    mlflow_client.set_model_version_tag(name, version, "gate_decision", decision.outcome)
    mlflow_client.set_model_version_tag(name, version, "gate_reason", reason)
    if decision.outcome in (CHAMPION, CHALLENGER):
        set_alias(registry, name, decision.outcome, version, actor, reason)
    return decision
