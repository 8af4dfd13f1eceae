"""Monitoring: daily performance, drift and data-quality assets with checks, the monitoring job and
schedule, and the sensor that retrains when they degrade; one set per model config."""

import dagster as dg

from mlops_assets.defs.landing.partitions import daily_partitions, daily_schedule
from mlops_assets.defs.monitoring.assets import build_monitoring_assets
from mlops_assets.defs.monitoring.sensors import retrain_sensor
from mlops_assets.model_config import model_configs

_assets, _sensors = [], []
for _config in model_configs().values():
    _assets += build_monitoring_assets(_config)
    _sensors.append(retrain_sensor(_config))

# After the 03:00 scoring: monitor yesterday (its predictions, and the day whose actuals are due).
monitoring_job = dg.define_asset_job(
    name="daily_monitoring_job",
    selection=dg.AssetSelection.groups("monitoring"),
    partitions_def=daily_partitions,
    description="Performance against delayed actuals, feature and prediction drift, data quality.",
)
monitoring_schedule = daily_schedule(monitoring_job, 4, "daily_monitoring_schedule")

defs = dg.Definitions(
    assets=_assets, jobs=[monitoring_job], schedules=[monitoring_schedule], sensors=_sensors
)
