import datetime as dt

import dagster as dg

from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.defs.landing.partitions import daily_partitions
from mlops_assets.defs.landing.resources import LandingZoneResource

LANDING_KEYS = {table: dg.AssetKey(["landing", table]) for table in LANDING_TABLES}

_DESCRIPTIONS = {
    "customers": "Customer sign-ups per day (the first day carries the earlier backlog).",
    "orders": "Orders placed per day: amount, items, discount, status.",
    "support_tickets": "Support tickets opened per day, plus update rows for tickets resolved that day.",
}


def partition_days(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> list[dt.date]:
    """The days a run covers: one partition (the UI's Materialize, a schedule tick), a range (a
    single-run backfill), or none."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return []
    # From the run's key range rather than the step's partitions: the checks also run on their own.
    keys = daily_partitions.get_partition_keys_in_range(context.partition_key_range)
    return [dt.date.fromisoformat(key) for key in keys]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            description=_DESCRIPTIONS[table],
            group_name="landing",
            kinds={"parquet"},
            metadata={"dagster/table_name": f"landing.{table}"},
        )
        for table, key in LANDING_KEYS.items()
    ],
    partitions_def=daily_partitions,
    # A backfill of many days runs as one run that writes every day, not one run per day.
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def landing_tables(context: dg.AssetExecutionContext, landing_zone: LandingZoneResource):
    """Lands the shop's daily deliveries as Parquet, one file per table and day."""
    days = partition_days(context)
    if not days:
        raise dg.Failure(
            "landing tables are daily-partitioned: pick a partition or a range of days"
        )
    rows = dict.fromkeys(LANDING_TABLES, 0)
    last_paths: dict[str, str] = {}
    for day in days:
        try:
            landed = landing_zone.land(day)
        except ValueError as err:
            raise dg.Failure(str(err)) from None
        for table, (path, n) in landed.items():
            rows[table] += n
            last_paths[table] = path
    context.log.info(f"landed {len(days)} day(s) {days[0]}..{days[-1]}: {rows}")
    for table, key in LANDING_KEYS.items():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": rows[table],
                "days": len(days),
                "first_day": days[0].isoformat(),
                "last_day": days[-1].isoformat(),
                "path": dg.MetadataValue.path(last_paths[table]),
            },
        )
