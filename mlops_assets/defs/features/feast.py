"""The Feast store's assets: the registry applied from feature_repo/, and the online store
materialized day by day (the window recorded in the registry as `feast materialize` records it)."""

import datetime as dt

import dagster as dg

from mlops_assets.defs.keys import FEAST_ONLINE, FEAST_REGISTRY, feature_table_keys
from mlops_assets.defs.partitions import daily_partitions, partition_days
from mlops_assets.resources import FeatureStoreResource, WarehouseResource


@dg.asset(
    key=FEAST_REGISTRY,
    deps=[*feature_table_keys()],
    group_name="features",
    kinds={"feast"},
    description="Feast definitions in feature_repo/ applied to the registry (the plan is metadata).",
)
def feast_registry(context: dg.AssetExecutionContext, feature_store: FeatureStoreResource):
    from feast.errors import FeastError

    from mlops_assets.features.store import repo_contents, repo_objects

    store = feature_store.store()
    contents = repo_contents()
    try:
        registry_diff, infra_diff, _ = store.plan(contents)
        store.apply(repo_objects(contents))
    except (FeastError, ValueError) as err:
        # e.g. a feature service naming a feature no view has: a user mistake, said plainly.
        raise dg.Failure(f"feast plan/apply rejected feature_repo/: {err}") from None
    plan = registry_diff.to_string().strip() or "no changes"
    context.log.info(plan)
    return dg.MaterializeResult(
        metadata={
            "plan": dg.MetadataValue.md(f"```\n{plan}\n{infra_diff.to_string()}\n```"),
            "feature_views": ", ".join(sorted(v.name for v in contents.feature_views)),
            "on_demand_feature_views": ", ".join(
                sorted(v.name for v in contents.on_demand_feature_views)
            ),
            "feature_services": ", ".join(sorted(s.name for s in contents.feature_services)),
            "project": store.project,
        }
    )


@dg.asset(
    key=FEAST_ONLINE,
    deps=[FEAST_REGISTRY, *feature_table_keys()],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="features",
    kinds={"feast", "sqlite"},
    description=(
        "Every feature view materialized into the online store, one day of feature timestamps per "
        "partition, the window recorded in the Feast registry as `feast materialize` records it. "
        "Re-running a day leaves the store identical; an older event never overwrites a newer one."
    ),
)
def feast_online_features(
    context: dg.AssetExecutionContext,
    feature_store: FeatureStoreResource,
    warehouse: WarehouseResource,
):
    days = partition_days(context, "online materialization is")
    from mlops_assets.features.store import materialize_window, source_rows_between

    start = dt.datetime.combine(days[0], dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    store = feature_store.store()
    try:
        written = materialize_window(store, start, end)
    except ValueError as err:
        raise dg.Failure(str(err)) from None
    tables = [".".join(key.path[1:]) for key in feature_table_keys()]
    rows = source_rows_between(warehouse, tables, start, end)
    # The window is recorded in the Feast registry as `feast materialize` records it: the latest
    # end is where `feast materialize-incremental` continues.
    watermarks = [v.most_recent_end_time for v in store.list_feature_views()]
    return dg.MaterializeResult(
        metadata={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "feast_incremental_watermark": min(watermarks).isoformat()
            if watermarks and None not in watermarks
            else "n/a",
            "feature_views": ", ".join(written),
            "source_rows": sum(rows.values()),
            **{f"source_rows_{table}": n for table, n in rows.items()},
            **{f"entities_written_{v}": n for v, n in written.items() if n is not None},
        }
    )
