"""Jobs and schedules that span domains."""

import dagster as dg

from mlops_assets.defs.landing.partitions import daily_partitions, daily_schedule

# Land yesterday's deliveries, rebuild bronze -> silver -> gold, refresh the feature store and the
# versioned training set.
daily_lakehouse_job = dg.define_asset_job(
    name="daily_lakehouse_job",
    selection=dg.AssetSelection.groups("landing", "bronze", "silver", "gold", "features"),
    partitions_def=daily_partitions,
    description="Land one day of raw data, rebuild the dbt medallion, materialize features, "
    "and version the training set.",
)

daily_lakehouse_schedule = daily_schedule(daily_lakehouse_job, 1, "daily_lakehouse_schedule")

# Score yesterday's active customers with the champion once the lakehouse is fresh.
daily_scoring_job = dg.define_asset_job(
    name="daily_scoring_job",
    selection=dg.AssetSelection.groups("serving"),
    partitions_def=daily_partitions,
    description="Batch predictions of every model for one day, into Iceberg.",
)
daily_scoring_schedule = daily_schedule(daily_scoring_job, 3, "daily_scoring_schedule")

defs = dg.Definitions(
    jobs=[daily_lakehouse_job, daily_scoring_job],
    schedules=[daily_lakehouse_schedule, daily_scoring_schedule],
)
