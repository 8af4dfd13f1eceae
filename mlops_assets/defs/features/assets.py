import datetime as dt

import dagster as dg

from mlops_assets.defs.features.resources import FeatureStoreResource
from mlops_assets.defs.landing.assets import partition_days
from mlops_assets.defs.landing.partitions import daily_partitions

GOLD_FEATURES = dg.AssetKey(["warehouse", "gold", "customer_features"])
GOLD_LABELS = dg.AssetKey(["warehouse", "gold", "churn_labels"])
REGISTRY = dg.AssetKey(["feast", "registry"])
ONLINE = dg.AssetKey(["feast", "online", "customer_features"])
CHURN_DATASET = dg.AssetKey(["datasets", "churn_v1"])
SERVICE = "churn_v1"


@dg.asset(
    key=REGISTRY,
    deps=[GOLD_FEATURES],
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
    key=ONLINE,
    deps=[REGISTRY, GOLD_FEATURES],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="features",
    kinds={"feast", "sqlite"},
    description=(
        "Customer features materialized into the online store, one day of feature timestamps per "
        "partition, the window recorded in the Feast registry as `feast materialize` records it. "
        "Re-running a day leaves the store identical; an older event never overwrites a newer one."
    ),
)
def feast_online_features(context: dg.AssetExecutionContext, feature_store: FeatureStoreResource):
    days = partition_days(context)
    if not days:
        raise dg.Failure("online materialization is daily-partitioned: pick a day or a range")
    from mlops_assets.features.store import materialize_window, source_rows_between

    start = dt.datetime.combine(days[0], dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    store = feature_store.store()
    try:
        written = materialize_window(store, start, end)
    except ValueError as err:
        raise dg.Failure(str(err)) from None
    rows = source_rows_between(feature_store.settings(), start, end)
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
            "source_rows": rows if rows is not None else "n/a",
            **{f"entities_written_{v}": n for v, n in written.items() if n is not None},
        }
    )


class DatasetConfig(dg.Config):
    """Empty: every label known now. A date: only labels whose window had closed by then (how the
    first model of the demo is trained on the history before a drift)."""

    labels_known_by: str | None = None


@dg.asset(
    key=CHURN_DATASET,
    deps=[REGISTRY, GOLD_LABELS, GOLD_FEATURES],
    group_name="features",
    kinds={"feast", "dvc", "parquet"},
    description=(
        "The churn_v1 training set: gold.churn_labels joined point-in-time to the churn_v1 feature "
        "service, split by time, versioned with DVC (hash and remote in metadata)."
    ),
)
def churn_training_dataset(
    context: dg.AssetExecutionContext,
    feature_store: FeatureStoreResource,
    config: DatasetConfig,
):
    from mlops_assets.datasets.training_set import DatasetError, build_training_set, load_labels
    from mlops_assets.datasets.versioning import VersioningError, commit_and_push, datasets_dir

    settings = feature_store.settings()
    # The data folder's DVC project decides where: the repository's datasets/ for ./data, the
    # data folder's own otherwise (features/versioning.py).
    out_dir = datasets_dir(settings) / SERVICE
    known_by = None
    if config.labels_known_by:
        try:
            known_by = dt.datetime.combine(
                dt.date.fromisoformat(config.labels_known_by), dt.time(), dt.UTC
            )
        except ValueError:
            raise dg.Failure(
                f"labels_known_by must be a date (YYYY-MM-DD), got {config.labels_known_by!r}"
            ) from None
    try:
        labels = load_labels(settings, known_by)
        summary = build_training_set(feature_store.store(), SERVICE, labels, out_dir)
        version = commit_and_push(settings, SERVICE)
    except (DatasetError, VersioningError) as err:
        counts = getattr(err, "counts", {})
        raise dg.Failure(
            str(err), metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()}
        ) from None
    context.log.info(f"dataset {version.md5}: {summary.rows}")
    return dg.MaterializeResult(
        metadata={
            **summary.metadata(),
            **version.metadata(),
            "path": dg.MetadataValue.path(str(out_dir)),
            "dagster/row_count": sum(summary.rows.values()),
        }
    )
