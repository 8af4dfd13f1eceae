"""Training on Kubeflow Pipelines, the MLflow registry and the promotion gate, one set of assets per
model config in model_configs/ (a second model needs no new Dagster code)."""

import dagster as dg

from mlops_assets.defs.training.assets import build_model_assets
from mlops_assets.defs.training.resources import TrainingResource
from mlops_assets.model_config import model_configs

_assets, _jobs, _schedules = [], [], []
for _config in model_configs().values():
    assets, jobs, schedules = build_model_assets(_config)
    _assets += assets
    _jobs += jobs
    _schedules += schedules

defs = dg.Definitions(
    assets=_assets, jobs=_jobs, schedules=_schedules, resources={"training": TrainingResource()}
)
