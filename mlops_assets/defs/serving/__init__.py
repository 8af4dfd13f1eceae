"""Serving: daily batch predictions into Iceberg, one asset per model config."""

import dagster as dg

from mlops_assets.defs.serving.assets import build_serving_assets
from mlops_assets.models.config import model_configs

# Uses the `training` resource (MLflow registry, settings) that the training domain provides.
defs = dg.Definitions(assets=[a for c in model_configs().values() for a in build_serving_assets(c)])
