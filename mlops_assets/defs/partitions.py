import datetime as dt
from typing import Any

import dagster as dg

from mlops_assets.settings import get_settings

# One partition per landing day; the settings say which days exist.
_first_day, _last_day = get_settings().partition_days()
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_first_day, end_date=_last_day, timezone="UTC"
)


def partition_days(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, what: str
) -> list[dt.date]:
    """The days a run covers: one partition (the UI's Materialize, a schedule tick) or a range (a
    single-run backfill). A run without either fails, saying that `what` is daily-partitioned."""
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(f"{what} daily-partitioned: pick a partition or a range of days")
    # From the run's key range rather than the step's partitions: the checks also run on their own.
    keys = daily_partitions.get_partition_keys_in_range(context.partition_key_range)
    return [dt.date.fromisoformat(key) for key in keys]


def daily_schedule(job: Any, hour: int, name: str) -> dg.ScheduleDefinition:
    """Each day at `hour` UTC, run `job` for the day before. A day outside the partitions (after
    the simulated world's last day, on the embedded profile) is a skip with the reason, never a
    re-run of the last partition."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone="UTC",
        description=f"Daily at {hour:02d}:00 UTC: {job.name} for the previous day's partition.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time.astimezone(dt.UTC) - dt.timedelta(days=1)).date()
        key = day.isoformat()
        if not daily_partitions.has_partition_key(key):
            first = daily_partitions.get_first_partition_key()
            last = daily_partitions.get_last_partition_key()
            return dg.SkipReason(f"{key} is not a partition ({first} .. {last})")
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule
