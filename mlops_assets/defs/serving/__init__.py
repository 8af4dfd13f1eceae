"""Serving: daily batch predictions into Iceberg and the online deployment (KServe), with promote and
rollback jobs, one set per model config."""

import dagster as dg

from mlops_assets.defs.serving.assets import build_serving_assets
from mlops_assets.defs.serving.deployment import build_deployment
from mlops_assets.model_config import model_configs

_assets, _jobs, _sensors = [], [], []
for _config in model_configs().values():
    _assets += build_serving_assets(_config)
    assets, jobs, sensors = build_deployment(_config)
    _assets += assets
    _jobs += jobs
    _sensors += sensors

# Uses the `training` resource (MLflow registry, settings) that the training domain provides.
defs = dg.Definitions(assets=_assets, jobs=_jobs, sensors=_sensors)
