"""The code location loads and exposes the graph users see in the UI. A snapshot, so that a
silent change to keys, groups or checks shows up in review."""

import dagster as dg

from mlops_assets.defs.executors import executor_for
from mlops_assets.defs.landing.checks import (
    KEYS_NOT_NULL_CHECK,
    KEYS_UNIQUE_CHECK,
    SCHEMA_CHECK,
)
from mlops_assets.settings import Environment

EXPECTED_ASSETS = {
    "landing/customers": "landing",
    "landing/orders": "landing",
    "landing/support_tickets": "landing",
    "warehouse/bronze/stg_customers": "bronze",
    "warehouse/bronze/stg_orders": "bronze",
    "warehouse/bronze/stg_support_tickets": "bronze",
    "warehouse/silver/dim_customers": "silver",
    "warehouse/silver/fct_orders": "silver",
    "warehouse/silver/fct_support_tickets": "silver",
    "warehouse/gold/customer_features": "gold",
    "warehouse/gold/churn_labels": "gold",
    "feast/registry": "features",
    "feast/online/customer_features": "features",
    "datasets/churn_v1": "features",
    "models/churn/candidate": "training",
    "models/churn/promotion": "training",
    "predictions/churn/daily": "serving",
    "predictions/churn/actuals": "serving",
    "deployments/churn/endpoint": "deployment",
    "monitoring/churn/performance": "monitoring",
    "monitoring/churn/feature_drift": "monitoring",
    "monitoring/churn/prediction_drift": "monitoring",
    "monitoring/churn/data_quality": "monitoring",
}


def _repo():
    from mlops_assets.definitions import defs

    return defs, defs.get_repository_def()


def test_definitions_load_with_expected_assets_and_groups():
    _, repo = _repo()
    graph = repo.asset_graph
    found = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert found == EXPECTED_ASSETS


def test_gold_depends_on_landing_through_the_medallion():
    _, repo = _repo()
    graph = repo.asset_graph
    upstream = graph.get(dg.AssetKey(["warehouse", "gold", "customer_features"])).parent_keys
    assert dg.AssetKey(["warehouse", "silver", "fct_orders"]) in upstream
    bronze = graph.get(dg.AssetKey(["warehouse", "bronze", "stg_orders"])).parent_keys
    assert bronze == {dg.AssetKey(["landing", "orders"])}


def test_landing_checks_block_and_dbt_tests_are_checks():
    _, repo = _repo()
    checks = {(k.asset_key.to_user_string(), k.name) for k in repo.asset_graph.asset_check_keys}
    for table in ("customers", "orders", "support_tickets"):
        for name in (SCHEMA_CHECK, KEYS_NOT_NULL_CHECK, KEYS_UNIQUE_CHECK):
            assert (f"landing/{table}", name) in checks
    assert ("warehouse/bronze/stg_orders", "unique_stg_orders_order_id") in checks
    assert (
        "warehouse/gold/customer_features",
        "unique_combination_customer_features_customer_id__event_timestamp",
    ) in checks
    from mlops_assets.defs.landing.checks import landing_quality_checks

    assert all(spec.blocking for spec in landing_quality_checks.check_specs)


def test_feature_assets_sit_on_gold():
    _, repo = _repo()
    graph = repo.asset_graph
    online = graph.get(dg.AssetKey(["feast", "online", "customer_features"]))
    assert dg.AssetKey(["feast", "registry"]) in online.parent_keys
    assert online.partitions_def is not None
    dataset = graph.get(dg.AssetKey(["datasets", "churn_v1"]))
    assert dg.AssetKey(["warehouse", "gold", "churn_labels"]) in dataset.parent_keys
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == dataset.key}
    assert checks == {"dataset_labels_have_both_classes", "dataset_splits_are_time_ordered"}


def test_daily_job_and_schedule():
    defs, repo = _repo()
    job = defs.resolve_job_def("daily_lakehouse_job")
    assert job.partitions_def is not None
    schedule = repo.get_schedule_def("daily_lakehouse_schedule")
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.job_name == "daily_lakehouse_job"


def test_each_model_config_gets_a_retraining_job_and_schedule():
    defs, repo = _repo()
    job = defs.resolve_job_def("retrain_churn")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "datasets/churn_v1",
        "models/churn/candidate",
        "models/churn/promotion",
        "deployments/churn/endpoint",
    }
    schedule = repo.get_schedule_def("retrain_churn_schedule")
    assert schedule.cron_schedule == "0 2 * * 0"  # Sunday 02:00, from model_configs/churn.yaml


def test_prod_uses_the_kubernetes_executor():
    assert executor_for(Environment.PROD).name == "k8s"
    assert executor_for(Environment.LOCAL).name == "in_process"


def test_promote_and_rollback_are_jobs_and_deployment_has_its_check():
    defs, repo = _repo()
    for action in ("promote", "rollback"):
        assert defs.resolve_job_def(f"{action}_churn").tags["mlops/action"] == action
    checks = {
        k.name for k in repo.asset_graph.asset_check_keys if k.asset_key.path[0] == "deployments"
    }
    assert checks == {"endpoint_serves_the_registry_champion"}


def test_monitoring_assets_have_failing_checks_a_job_schedules_and_sensors():
    _, repo = _repo()
    checks = {
        (k.asset_key.path[-1], k.name)
        for k in repo.asset_graph.asset_check_keys
        if k.asset_key.path[0] == "monitoring"
    }
    assert checks == {
        ("performance", "performance_within_thresholds"),
        ("feature_drift", "feature_drift_within_thresholds"),
        ("prediction_drift", "prediction_drift_within_thresholds"),
        ("data_quality", "data_quality_within_thresholds"),
    }
    schedules = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert schedules == {
        "daily_lakehouse_schedule": "0 1 * * *",
        "daily_scoring_schedule": "0 3 * * *",
        "daily_monitoring_schedule": "0 4 * * *",
        "retrain_churn_schedule": "0 2 * * 0",
    }
    sensors = {s.name: s for s in repo.sensor_defs}
    assert sensors["retrain_churn_on_degradation"].job_name == "retrain_churn"
    assert {j.name for j in sensors["canary_churn"].jobs} == {"promote_churn", "rollback_churn"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
