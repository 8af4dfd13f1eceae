import datetime as dt
from typing import Any

import dagster as dg

from mlops_assets.settings import Environment, get_settings


def daily_partitions_for(env: Environment) -> dg.DailyPartitionsDefinition:
    """One partition per landing day from the world's first day. The embedded profile's
    partitions end with the simulated world's last day (nothing shows as missing that can never
    exist); production's run to today."""
    world = get_settings().world()
    end = None if env is Environment.PROD else world.end_date.isoformat()
    return dg.DailyPartitionsDefinition(
        start_date=world.start_date.isoformat(), end_date=end, timezone="UTC"
    )


daily_partitions = daily_partitions_for(get_settings().env)


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
