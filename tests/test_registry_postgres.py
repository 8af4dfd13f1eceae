"""The MLflow registry and the decision log on the PostgreSQL of this machine (the production
backend); skipped with a reason when absent, mandatory when CI=true."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops_assets.model_config import model_configs
from mlops_assets.settings import get_settings
from mlops_assets.training.promotion import champion_at, history, set_alias
from mlops_assets.training.registry import (
    CHAMPION,
    alias_version,
    client,
    load_model,
    log_and_register,
)

pytestmark = pytest.mark.postgres


def test_registry_and_decisions_on_postgres(postgres_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(
        "MLOPS_MLFLOW_TRACKING_URI", postgres_dsn.replace("postgresql://", "postgresql+psycopg2://")
    )
    monkeypatch.setenv("MLOPS_MLFLOW_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    monkeypatch.setenv("MLOPS_DECISIONS_DB_URL", postgres_dsn)
    get_settings.cache_clear()
    try:
        settings = get_settings()
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
            estimator, X.head(3), config, {"model": {"roc_auc": 0.9}}, lineage, settings=settings
        )
        mlflow_client = client(settings)
        assert (
            mlflow_client.get_model_version(config.registered_model, version).tags["kfp_run_id"]
            == "k1"
        )
        assert mlflow_client.get_run(run_id).data.metrics["model_test_roc_auc"] == 0.9

        set_alias(
            settings,
            config.registered_model,
            CHAMPION,
            version,
            actor="test",
            reason="postgres round trip",
        )
        assert alias_version(mlflow_client, config.registered_model, CHAMPION) == version
        reloaded = load_model(settings, config.registered_model, version)
        np.testing.assert_allclose(
            reloaded.predict_proba(X)[:, 1], estimator.predict_proba(X)[:, 1]
        )
        assert champion_at(settings, config.registered_model, dt.datetime.now(dt.UTC)) == version
        assert history(settings, config.registered_model)[-1]["reason"] == "postgres round trip"
        # The artifacts went to the configured root, not to ./mlruns.
        assert any((tmp_path / "artifacts").rglob("MLmodel"))
    finally:
        get_settings.cache_clear()
