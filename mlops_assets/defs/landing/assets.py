import dagster as dg

from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.defs.keys import LANDING
from mlops_assets.defs.landing.resources import LandingZoneResource
from mlops_assets.defs.partitions import daily_partitions, partition_days

_DESCRIPTIONS = {
    "customers": "Customer sign-ups per day (the first day carries the earlier backlog).",
    "orders": "Orders placed per day: amount, items, discount, status.",
    "support_tickets": "Support tickets opened per day, plus update rows for tickets resolved that day.",
    "payments": "One payment per order of the day: method, device, ship country (no fraud flag).",
    "chargebacks": "Chargebacks reported that day, for orders 7 to 60 days old (the fraud labels).",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            description=_DESCRIPTIONS[table],
            group_name="landing",
            kinds={"parquet"},
            metadata={"dagster/table_name": f"landing.{table}"},
        )
        for table, key in LANDING.items()
    ],
    partitions_def=daily_partitions,
    # A backfill of many days runs as one run that writes every day, not one run per day.
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def landing_tables(context: dg.AssetExecutionContext, landing_zone: LandingZoneResource):
    """Lands the shop's daily deliveries as Parquet, one file per table and day."""
    days = partition_days(context, "landing tables are")
    rows = dict.fromkeys(LANDING_TABLES, 0)
    last_paths: dict[str, str] = {}
    try:
        landed_days = landing_zone.land(days)
    except ValueError as err:
        raise dg.Failure(str(err)) from None
    for landed in landed_days:
        for table, (path, n) in landed.items():
            rows[table] += n
            last_paths[table] = path
    context.log.info(f"landed {len(days)} day(s) {days[0]}..{days[-1]}: {rows}")
    for table, key in LANDING.items():
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
