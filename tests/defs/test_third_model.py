"""A model is configuration: a third model, written into a copy of the project as a team would add
it (a model config, a dbt label model, a Feast feature service; no Python), gets the whole asset
chain, its jobs, sensors and schedules, and a training run through Dagster registers it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlops_assets.testing import copy_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent

# Will the customer spend at least $150 in the 30 days after a snapshot? Labels from the same
# silver orders churn's come from, features from the customer views churn shares.
LABELS_SQL = """\
with
features as (select customer_id, event_timestamp from {{ ref('customer_features') }}),
horizon as (select max(data_end) as data_end from {{ ref('int_snapshot_dates') }}),
orders as (select customer_id, ordered_at, net_amount_usd from {{ ref('fct_orders') }}),
labelable as (
    select features.customer_id, features.event_timestamp,
        {{ dbt.dateadd('day', var('spender_label_window_days'), 'features.event_timestamp') }}
            as label_available_at
    from features cross join horizon
    where {{ dbt.dateadd('day', var('spender_label_window_days'), 'features.event_timestamp') }}
        <= horizon.data_end
)
select labelable.customer_id, labelable.event_timestamp, labelable.label_available_at,
    cast(case when coalesce(sum(orders.net_amount_usd), 0) >= 150 then 1 else 0 end as integer)
        as big_spender
from labelable
left join orders
    on orders.customer_id = labelable.customer_id
    and orders.ordered_at >= labelable.event_timestamp
    and orders.ordered_at < labelable.label_available_at
group by 1, 2, 3
order by 1, 2
"""

SERVICE_PY = """\
from feast import FeatureService
from feature_views import customer_orders, customer_profile, customer_support

spender_v1 = FeatureService(
    name="spender_v1",
    features=[customer_profile, customer_orders, customer_support],
    description="Features of the big-spender model: churn's customer views, shared.",
)
"""

CONFIG_YAML = """\
name: spender
registered_model: spender
feature_service: spender_v1
label_table: gold.spender_labels
label: big_spender
label_window_days: 30
actuals: {kind: label_table}
algorithm: logistic_regression
params: {C: 1.0, class_weight: balanced}
tuning: {C: [0.3, 1.0], max_candidates: 2}
thresholds: {min_roc_auc: 0.55, min_pr_auc: 0.05, max_brier: 0.3}
"""

DVC_STAGE = """\
  spender_v1_dataset:
    cmd: mlops dataset build --service spender_v1
    deps:
      - data/gold/customer_features.parquet
      - data/gold/spender_labels.parquet
      - feature_repo/spender_service.py
    outs:
      - datasets/spender_v1
"""

# Run inside the copy: the lakehouse job over the world's days, then the new model's retraining
# job up to the gate (its deployment would start a model server).
RUN_PY = """\
import dagster as dg
from mlops_assets.definitions import load
from mlops_assets.settings import get_settings
from mlops_assets.training.registry import client, create_storage

world = get_settings().world()
defs = load()
tags = {
    "dagster/asset_partition_range_start": world.start_date.isoformat(),
    "dagster/asset_partition_range_end": world.last_day.isoformat(),
}
instance = dg.DagsterInstance.ephemeral()
lakehouse = defs.resolve_job_def("daily_lakehouse_job")
keys = [k for k in lakehouse.asset_layer.selected_asset_keys if k.path[0] != "datasets"]
assert lakehouse.execute_in_process(instance=instance, asset_selection=keys, tags=tags).success
create_storage(defs.resources["model_registry"].registry())
retrain = defs.resolve_job_def("retrain_spender")
keys = [k for k in retrain.asset_layer.selected_asset_keys if k.path[0] != "deployments"]
result = retrain.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False)
print("RESULT", result.success)
versions = client(defs.resources["model_registry"].registry()).search_model_versions(
    "name = 'spender'"
)
print("VERSIONS", len(versions))
"""


def _add_third_model(project: Path) -> None:
    (project / "model_configs" / "spender.yaml").write_text(CONFIG_YAML)
    (project / "dbt_project" / "models" / "gold" / "spender_labels.sql").write_text(LABELS_SQL)
    (project / "feature_repo" / "spender_service.py").write_text(SERVICE_PY)
    with (project / "dvc.yaml").open("a") as stages:
        stages.write(DVC_STAGE)


def _env(project: Path, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))}
    return {
        **env,
        "PYTHONPATH": str(project),  # the copy's package, not the installed one
        "MLOPS_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
    }


def _run(args: list[str], project: Path, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(
        args, cwd=project, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_a_third_model_from_configuration_alone(tmp_path):
    project, data = tmp_path / "project", tmp_path / "data"
    copy_project(project)
    _add_third_model(project)
    (data / "dagster_home").mkdir(parents=True)
    env = _env(project, data)
    # A small world, as `mlops demo --customers` would write it.
    world = {"n_customers": 1500, "days": 150, "covariate_drift_from": None}
    (data / "world.json").write_text(json.dumps({**world, "concept_drift_from": None}))
    check = f"import mlops_assets; assert mlops_assets.__file__.startswith({str(project)!r})"
    _run([str(BIN / "python"), "-c", check], project, env)
    _run([str(BIN / "mlops"), "prepare"], project, env)

    listed = json.loads(_run([str(BIN / "dg"), "list", "defs", "--json"], project, env))
    assets = {a["asset_key"] for a in listed["assets"]}
    for key in (
        "warehouse/gold/spender_labels",
        "datasets/spender_v1",
        "models/spender/candidate",
        "models/spender/promotion",
        "deployments/spender/endpoint",
        "predictions/spender/daily",
        "predictions/spender/actuals",
        "monitoring/spender/performance",
        "monitoring/spender/feature_drift",
    ):
        assert key in assets, f"{key} missing from {sorted(assets)}"
    names = lambda kind: {item["name"] for item in listed[kind]}  # noqa: E731
    assert {"retrain_spender", "promote_spender", "rollback_spender"} <= names("jobs")
    assert "retrain_spender_schedule" in names("schedules")
    assert {"retrain_spender_on_degradation", "canary_spender"} <= names("sensors")
    # The models that were there keep their chains.
    assert {"retrain_churn", "retrain_fraud"} <= names("jobs")

    script = tmp_path / "run_third.py"
    script.write_text(textwrap.dedent(RUN_PY))
    out = _run([str(BIN / "python"), str(script)], project, env, timeout=900)
    assert "RESULT True" in out, out[-3000:]
    assert "VERSIONS 1" in out, out[-3000:]
