"""A logistic regression on imbalanced labels, configured only in its model config, through the
real kfp.local pipeline and MLflow: `auto` threshold recorded with the model, the imbalanced
metrics logged, the gate's recall-at-precision floor and expected-cost comparison, and the serving
loader scoring it in sklearn at the recorded threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.datasets.versioning import commit_and_push
from mlops_assets.model_config import CONFIG_DIR, ModelConfig
from mlops_assets.testing import scratch_world, synthetic_training_set
from mlops_assets.training.gate import gate
from mlops_assets.training.registry import CHAMPION, client, load_model
from mlops_assets.training.thresholds import THRESHOLD_ATTRIBUTE

pytestmark = pytest.mark.slow
CHURN = yaml.safe_load((CONFIG_DIR / "churn.yaml").read_text())
FRAUD_LIKE = ModelConfig.model_validate(
    {
        **CHURN,
        "algorithm": "logistic_regression",
        "params": {"C": 1.0, "class_weight": "balanced"},
        "tuning": {"C": [0.1, 1.0]},
        "decision_threshold": "auto",
        "thresholds": {
            "min_roc_auc": 0.7,
            "min_pr_auc": 0.1,
            "max_brier": 0.25,
            "min_recall_at_precision": {"precision": 0.3, "min_recall": 0.2},
            "cost_false_positive": 1,
            "cost_false_negative": 20,
            "compare_on": "expected_cost",
            "max_regression_vs_champion": 0.2,
        },
    }
)
LINEAGE = {"git_commit": "0" * 40, "dagster_run_id": "test-run"}


def _rare_label(folder) -> None:
    """Make the synthetic label rare (~5%) and learnable from a few features."""
    for split in ("train", "validation", "test"):
        path = folder / f"{split}.parquet"
        frame = pd.read_parquet(path)
        rng = np.random.default_rng(len(frame))
        logit = (
            -4.5
            + 0.05 * frame["days_since_last_order"]
            + 0.8 * frame["ticket_count_30d"]
            - 0.5 * frame["order_count_30d"]
        )
        frame["churned"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype("int32")
        frame.to_parquet(path, index=False)


def _with_recall_floor(config: ModelConfig, precision: float, min_recall: float) -> ModelConfig:
    """`config` with its gate's recall-at-precision floor replaced (the rest of its thresholds kept)."""
    thresholds = config.thresholds
    floor = thresholds.min_recall_at_precision.model_copy(
        update={"precision": precision, "min_recall": min_recall}
    )
    return config.model_copy(
        update={"thresholds": thresholds.model_copy(update={"min_recall_at_precision": floor})}
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("logistic")
    with scratch_world(root, 200) as (settings, res):
        folder = settings.datasets_dir / "churn_v1"
        synthetic_training_set(folder, 8000, seed=3)
        _rare_label(folder)
        gold = settings.data_dir / "gold"  # the DVC stage's inputs: only their hashes matter here
        gold.mkdir(parents=True, exist_ok=True)
        for name in ("customer_features.parquet", "churn_labels.parquet"):
            (gold / name).write_bytes(b"synthetic")
        md5 = commit_and_push(settings, "churn_v1").md5
        yield settings, res, md5


def test_a_logistic_regression_trains_gates_and_serves_at_its_auto_threshold(world):
    settings, res, md5 = world
    registry = res.model_registry.registry()
    run = res.pipeline_runner.run(FRAUD_LIKE, md5, LINEAGE, registry)
    model = run.metrics["model"]
    assert model["roc_auc"] > 0.75
    assert 0.0 < model["decision_threshold"] < 1.0
    assert {"recall_at_precision", "expected_cost_per_1000", "pr_auc"} <= set(model)

    mlflow_client = client(registry)
    logged = mlflow_client.get_run(run.mlflow_run_id).data
    assert logged.params["algorithm"] == "logistic_regression"
    assert logged.params["param_C"] in {"0.1", "1.0"}
    assert logged.params["param_class_weight"] == "balanced"
    assert logged.params["decision_threshold_mode"] == "auto"
    assert float(logged.params["decision_threshold"]) == model["decision_threshold"]
    for name in ("recall_at_precision", "expected_cost_per_1000", "decision_threshold"):
        assert f"model_test_{name}" in logged.metrics
    version = mlflow_client.get_model_version(FRAUD_LIKE.registered_model, run.model_version)
    assert float(version.tags["decision_threshold"]) == model["decision_threshold"]
    estimator = load_model(registry, FRAUD_LIKE.registered_model, run.model_version)
    assert type(estimator[-1]).__name__ == "LogisticRegression"
    assert getattr(estimator, THRESHOLD_ATTRIBUTE) == model["decision_threshold"]

    # A recall floor the model cannot reach rejects it, saying why.
    strict = _with_recall_floor(FRAUD_LIKE, precision=0.99, min_recall=0.99)
    rejected = gate(registry, settings, strict, run.model_version, actor="test")
    assert rejected.outcome == "rejected"
    assert "recall at precision 0.99" in "; ".join(rejected.reasons)
    first = gate(registry, settings, FRAUD_LIKE, run.model_version, actor="test")
    assert first.outcome == CHAMPION, first.reasons

    # A second version is compared with the champion on expected cost on the same holdout.
    second = res.pipeline_runner.run(FRAUD_LIKE, md5, LINEAGE, registry)
    decision = gate(registry, settings, FRAUD_LIKE, second.model_version, actor="test")
    assert decision.compare_on == "expected_cost"
    assert decision.champion_on_holdout == pytest.approx(model["expected_cost_per_1000"])
    assert decision.outcome == "challenger", decision.reasons
    assert "expected cost per 1000 rows" in decision.metadata()["reasons"]

    # The serving loader: no compiled trees, sklearn's scores, the recorded threshold.
    from mlops_assets.serving.predictor import load_arm

    columns = [str(c) for c in estimator.feature_names_in_]
    arm = load_arm(registry, FRAUD_LIKE, "champion", run.model_version, columns)
    assert arm.compiled is None
    assert arm.threshold == model["decision_threshold"]
    test = pd.read_parquet(settings.datasets_dir / "churn_v1" / "test.parquet")
    rows = test[columns].head(50).to_dict(orient="records")
    np.testing.assert_allclose(
        arm.predict(rows), estimator.predict_proba(test[columns].head(50))[:, 1]
    )
