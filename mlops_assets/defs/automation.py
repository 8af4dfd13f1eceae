"""Jobs and schedules that span domains and models: the daily lakehouse build, scoring and
monitoring, each on the day before its tick (the retraining schedules are per model, in
defs/training)."""

import dagster as dg

from mlops_assets.defs.partitions import daily_partitions, daily_schedule

# Land yesterday's deliveries, rebuild bronze -> silver -> gold, refresh the feature store and the
# versioned training sets.
daily_lakehouse_job = dg.define_asset_job(
    name="daily_lakehouse_job",
    selection=dg.AssetSelection.groups("landing", "bronze", "silver", "gold", "features"),
    partitions_def=daily_partitions,
    description="Land one day of raw data, rebuild the dbt medallion, materialize features, "
    "and version the training sets.",
)
daily_lakehouse_schedule = daily_schedule(daily_lakehouse_job, 1, "daily_lakehouse_schedule")

# Score yesterday's active entities with each model's champion once the lakehouse is fresh.
daily_scoring_job = dg.define_asset_job(
    name="daily_scoring_job",
    selection=dg.AssetSelection.groups("serving"),
    partitions_def=daily_partitions,
    description="Batch predictions of every model for one day, into Iceberg, and due actuals.",
)
daily_scoring_schedule = daily_schedule(daily_scoring_job, 3, "daily_scoring_schedule")

# After scoring: monitor yesterday (its predictions, and the day whose actuals are due).
daily_monitoring_job = dg.define_asset_job(
    name="daily_monitoring_job",
    selection=dg.AssetSelection.groups("monitoring"),
    partitions_def=daily_partitions,
    description="Performance against delayed actuals, feature and prediction drift, data quality.",
)
daily_monitoring_schedule = daily_schedule(daily_monitoring_job, 4, "daily_monitoring_schedule")
