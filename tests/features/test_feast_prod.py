"""The production Feast configuration: feature_store.prod.yaml is valid, and its Redis online store
works for real against the Redis on this machine (skipped when absent, mandatory when CI=true)."""

import datetime as dt
import uuid

import pandas as pd
import pytest
from feast import FeatureStore
from feast.repo_config import RepoConfig, load_repo_config

from mlops_assets.features.online import OnlineFeatureReader
from mlops_assets.features.store import FEATURE_REPO, apply_feature_repo

T0 = pd.Timestamp("2025-03-05")


def test_prod_feature_store_yaml_is_valid(monkeypatch):
    for name, value in {
        "FEAST_REGISTRY_URL": "postgresql+psycopg2://feast@pg:5432/feast",
        "FEAST_REDIS_CONNECTION": "redis:6379,ssl=true",
        "TRINO_HOST": "trino",
        "TRINO_PORT": "8443",
        "TRINO_CATALOG": "iceberg",
        "TRINO_USER": "feast",
    }.items():
        monkeypatch.setenv(name, value)
    config = load_repo_config(FEATURE_REPO, FEATURE_REPO / "feature_store.prod.yaml")
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "redis:6379,ssl=true"
    assert type(config.offline_store).__name__ == "TrinoOfflineStoreConfig"
    assert config.offline_store.port == 8443
    assert config.registry.registry_type == "sql"
    assert config.entity_key_serialization_version == 3


def _gold(path, rows):
    frame = pd.DataFrame(rows)
    frame["created_timestamp"] = frame["event_timestamp"]
    for col, default in {
        "country_code": "VN",
        "acquisition_channel": "organic",
        "plan": "basic",
        "tenure_days": 100,
        "age_years": 30,
        "segment": "loyal",
        "order_count_lifetime": 3,
        "order_count_30d": 1,
        "order_count_90d": 2,
        "spend_30d_usd": 20.0,
        "spend_90d_usd": 60.0,
        "avg_order_value_90d_usd": 30.0,
        "discount_order_share_90d": 0.5,
        "avg_discount_pct_90d": 10.0,
        "return_share_90d": 0.0,
        "days_since_last_order": 3,
        "ticket_count_30d": 0,
        "ticket_count_90d": 1,
        "open_ticket_count": 0,
        "high_priority_ticket_count_90d": 0,
    }.items():
        frame[col] = default
    frame["last_order_at"] = frame["event_timestamp"] - pd.Timedelta(days=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


@pytest.mark.redis
def test_redis_online_store_serves_what_was_materialized(redis_address, settings, tmp_path):
    host, port = redis_address
    gold = settings.gold_dir / "customer_features.parquet"
    # Two snapshots per customer; the later one must win, whatever order windows arrive in.
    _gold(
        gold,
        [
            {"customer_id": c, "event_timestamp": T0, "lifetime_value_usd": float(c)}
            for c in range(1, 51)
        ]
        + [
            {
                "customer_id": c,
                "event_timestamp": T0 + pd.Timedelta(days=7),
                "lifetime_value_usd": 1000.0 + c,
            }
            for c in range(1, 51)
        ],
    )
    project = f"mlops_test_{uuid.uuid4().hex[:8]}"
    store = FeatureStore(
        config=RepoConfig(
            project=project,
            provider="local",
            registry={"registry_type": "file", "path": str(tmp_path / "registry.db")},
            online_store={"type": "redis", "connection_string": f"{host}:{port}"},
            offline_store={"type": "duckdb"},
            entity_key_serialization_version=3,
            repo_path=FEATURE_REPO,
        )
    )
    apply_feature_repo(store)
    try:
        start = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
        # The customer views (churn_v1's), over the synthetic customer table written above.
        views = ["customer_profile", "customer_orders", "customer_support"]
        store.materialize(start, start + dt.timedelta(days=14), feature_views=views)
        store.materialize(
            start, start + dt.timedelta(days=7), feature_views=views
        )  # older, replayed
        reader = OnlineFeatureReader(store, "churn_v1")
        now = (T0 + pd.Timedelta(days=8)).to_pydatetime().replace(tzinfo=dt.UTC)
        rows = reader.read(list(range(1, 51)), now)
        assert [r["lifetime_value_usd"] for r in rows] == [1000.0 + c for c in range(1, 51)]
        assert all(r["days_since_last_order_now"] == pytest.approx(4.0) for r in rows)
        sdk = store.get_online_features(
            features=store.get_feature_service("churn_v1"),
            entity_rows=[{"customer_id": 7, "request_ts": now}],
        ).to_dict()
        assert sdk["lifetime_value_usd"] == [1007.0]
        assert reader.read([999], now)[0]["lifetime_value_usd"] is None
    finally:
        store.teardown()
