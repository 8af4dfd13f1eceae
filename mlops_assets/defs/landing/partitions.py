import dagster as dg

from mlops_assets.settings import get_settings

# One partition per landing day, from the source's first day.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().start_date.isoformat(), timezone="UTC"
)
