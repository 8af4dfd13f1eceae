"""Models load without executing pickles: skops files checked against the project's trusted
types, pickle-format models refused, and the registry keeps the signature the MLflow UI shows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.model_config import model_configs
from mlops_assets.training.estimators import build_estimator
from mlops_assets.training.registry import (
    MODEL_FILE,
    UnsafeModelError,
    client,
    download_model,
    experiment_id,
    load_estimator,
    load_model,
    load_registered,
    log_and_register,
    save_estimator,
)

CONFIG = model_configs()["churn"]
LINEAGE = {"dvc_md5": "x.dir", "feature_service": "churn_v1", "git_commit": "0"}


def _frame(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "lifetime_value_usd": rng.gamma(2, 50, n),
            "order_count_30d": rng.integers(0, 6, n).astype(float),
            "plan": rng.choice(["free", "basic", "premium"], n),
            "segment": rng.choice(["new", "loyal", None], n),
        }
    )
    return frame, (rng.random(n) < 0.4).astype(int)


@pytest.mark.parametrize("kind", ["model", "baseline"])
def test_the_projects_estimators_round_trip_through_skops(tmp_path, kind):
    X, y = _frame()
    estimator = build_estimator(CONFIG, X, kind).fit(X, y)
    path = tmp_path / MODEL_FILE
    save_estimator(estimator, path)
    loaded = load_estimator(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), estimator.predict_proba(X))


def test_a_file_that_would_run_foreign_code_is_refused_before_anything_runs(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    marker = tmp_path / "ran"
    # A "model" whose transform would run a shell command when used.
    trojan = make_pipeline(FunctionTransformer(os.system))
    path = tmp_path / MODEL_FILE
    save_estimator(trojan, path)
    with pytest.raises(UnsafeModelError, match="system"):
        load_estimator(path)
    assert not marker.exists()


def test_registered_models_are_skops_with_a_signature_and_load_safely(resources):
    registry = resources.model_registry.registry()
    X, y = _frame()
    estimator = build_estimator(CONFIG, X).fit(X, y)
    _, version = log_and_register(
        registry, estimator, X.head(3), CONFIG, {"model": {"roc_auc": 0.9}}, LINEAGE
    )
    local = download_model(registry, CONFIG.registered_model, version)
    mlmodel = (local / "MLmodel").read_text()
    assert "serialization_format: skops" in mlmodel
    assert "signature:" in mlmodel and "lifetime_value_usd" in mlmodel
    assert not list(local.rglob("*.pkl"))
    reloaded = load_model(registry, CONFIG.registered_model, version)
    np.testing.assert_allclose(reloaded.predict_proba(X), estimator.predict_proba(X))


def test_a_pickled_registry_model_is_refused(resources):
    import mlflow

    X, y = _frame()
    estimator = build_estimator(CONFIG, X).fit(X, y)
    registry = resources.model_registry.registry()
    # The registry's experiment: MLflow's default one would write ./mlruns in the checkout.
    experiment = experiment_id(client(registry), CONFIG.name, registry)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            estimator, name="model", serialization_format="cloudpickle", input_example=X.head(2)
        )
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    with pytest.raises(UnsafeModelError, match="cloudpickle"):
        load_registered(Path(local))
