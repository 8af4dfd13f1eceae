"""The MLflow registry and the decision log on the PostgreSQL of this machine (the production
backend); skipped with a reason when absent, mandatory when CI=true."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops_assets.model_config import model_configs
from mlops_assets.resources import ModelRegistryResource
from mlops_assets.training.decisions import champion_at, history, set_alias
from mlops_assets.training.registry import (
    CHAMPION,
    alias_version,
    client,
    load_model,
    log_and_register,
)

pytestmark = pytest.mark.postgres


def test_registry_and_decisions_on_postgres(postgres_dsn, tmp_path):
    # The production registry's backends: MLflow and the decision log on PostgreSQL.
    registry = ModelRegistryResource(
        tracking_uri=postgres_dsn.replace("postgresql://", "postgresql+psycopg2://"),
        artifact_root=(tmp_path / "artifacts").as_uri(),
        decisions_url=postgres_dsn,
    ).registry()
    config = model_configs()["churn"]
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.random(200), "b": rng.random(200)})
    y = (X["a"] + 0.2 * rng.random(200) > 0.6).astype(int)
    estimator = LogisticRegression().fit(X, y)
    lineage = {
        "dvc_md5": "abc.dir",
        "feature_service": "churn_v1",
        "git_commit": "0" * 40,
        "kfp_run_id": "k1",
        "dagster_run_id": "d1",
    }
    run_id, version = log_and_register(
        registry, estimator, X.head(3), config, {"model": {"roc_auc": 0.9}}, lineage
    )
    mlflow_client = client(registry)
    assert (
        mlflow_client.get_model_version(config.registered_model, version).tags["kfp_run_id"] == "k1"
    )
    assert mlflow_client.get_run(run_id).data.metrics["model_test_roc_auc"] == 0.9

    set_alias(
        registry,
        config.registered_model,
        CHAMPION,
        version,
        actor="test",
        reason="postgres round trip",
    )
    assert alias_version(mlflow_client, config.registered_model, CHAMPION) == version
    reloaded = load_model(registry, config.registered_model, version)
    np.testing.assert_allclose(reloaded.predict_proba(X)[:, 1], estimator.predict_proba(X)[:, 1])
    assert champion_at(registry, config.registered_model, dt.datetime.now(dt.UTC)) == version
    assert history(registry, config.registered_model)[-1]["reason"] == "postgres round trip"
    # The artifacts went to the configured root, not to ./mlruns.
    assert any((tmp_path / "artifacts").rglob("MLmodel"))
