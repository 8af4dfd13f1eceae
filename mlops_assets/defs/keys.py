"""Every asset key of the graph, and the per-model job and sensor names, in one place: each domain
names its own assets and its upstream ones through these, so a key or a name is spelled once. Keys say where data lives (`warehouse/<layer>/...`,
`predictions/<model>/...`). Also the one run config that other domains address to an asset's
step (the retraining sensor and the demo set the dataset's label cutoff)."""

import datetime as dt
from functools import cache

import dagster as dg

from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.model_config import ModelConfig

LANDING = {table: dg.AssetKey(["landing", table]) for table in LANDING_TABLES}
FEAST_REGISTRY = dg.AssetKey(["feast", "registry"])
FEAST_ONLINE = dg.AssetKey(["feast", "online", "features"])


def table_key(table: str) -> dg.AssetKey:
    """The asset of a warehouse table named `schema.table` (the dbt models' keys)."""
    return dg.AssetKey(["warehouse", *table.split(".")])


FEATURE_TABLE_TAG = "feature_table"


@cache
def feature_table_keys() -> tuple[dg.AssetKey, ...]:
    """The gold tables Feast reads: the dbt models tagged `feature_table` (in dbt's parsed
    manifest, so a new model's table needs no Python)."""
    import json

    from mlops_assets.defs.dbt.project import manifest_path

    nodes = json.loads(manifest_path().read_text())["nodes"].values()
    return tuple(
        table_key(f"{node['config'].get('schema') or node['schema']}.{node['name']}")
        for node in sorted(nodes, key=lambda n: n["unique_id"])
        if node["resource_type"] == "model" and FEATURE_TABLE_TAG in node.get("tags", [])
    )


def dataset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(["datasets", model.feature_service])


def dataset_run_config(model: ModelConfig, labels_known_by: dt.date) -> dict:
    """Run config that builds the model's training set from the labels known by a day."""
    step = "__".join(dataset_key(model).path)
    return {"ops": {step: {"config": {"labels_known_by": labels_known_by.isoformat()}}}}


def candidate_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(["models", model.name, "candidate"])


def promotion_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(["models", model.name, "promotion"])


def deployment_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(["deployments", model.name, "endpoint"])


def predictions_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(["predictions", model.name, "daily"])


def actuals_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(["predictions", model.name, "actuals"])


def monitor_key(model: ModelConfig, monitor: str) -> dg.AssetKey:
    return dg.AssetKey(["monitoring", model.name, monitor])


def retrain_job_name(model: ModelConfig) -> str:
    return f"retrain_{model.name}"


def retrain_sensor_name(model: ModelConfig) -> str:
    return f"retrain_{model.name}_on_degradation"


def online_drift_sensor_name(model: ModelConfig) -> str:
    return f"{model.name}_online_drift_sensor"


def rollout_job_name(action: str, model: ModelConfig) -> str:
    """`promote_<model>` or `rollback_<model>`."""
    return f"{action}_{model.name}"


def log_maintenance_key(model: ModelConfig) -> dg.AssetKey:
    """The upkeep (compaction, snapshot expiry) of the model's inference log."""
    return dg.AssetKey(["maintenance", model.name, "inference_log"])
