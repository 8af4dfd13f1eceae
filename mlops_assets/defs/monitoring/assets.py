"""Daily monitoring assets of one model, each with a check that fails when its threshold is crossed."""

import dagster as dg

from mlops_assets.defs.landing.assets import partition_days
from mlops_assets.defs.landing.partitions import daily_partitions
from mlops_assets.defs.training.resources import TrainingResource
from mlops_assets.model_config import ModelConfig

CHECK_NAMES = {
    "performance": "performance_within_thresholds",
    "feature_drift": "feature_drift_within_thresholds",
    "prediction_drift": "prediction_drift_within_thresholds",
    "data_quality": "data_quality_within_thresholds",
}
DESCRIPTIONS = {
    "performance": (
        "ROC AUC, precision, recall and calibration of the predictions whose actuals are due on the "
        "monitoring day (the prediction day 31 days earlier), overall and per model version."
    ),
    "feature_drift": (
        "KS test and PSI of every feature of the day's scored customers against the champion's "
        "training data; breached when too many features drift or one is missing."
    ),
    "prediction_drift": "PSI of the day's score distribution against the champion's training scores.",
    "data_quality": "Rows scored against the trailing week, null shares, features missing from the data.",
}


def monitor_key(config: ModelConfig, monitor: str) -> dg.AssetKey:
    return dg.AssetKey(["monitoring", config.name, monitor])


def build_monitoring_assets(config: ModelConfig) -> list[dg.AssetsDefinition]:
    return [_monitor_asset(config, monitor) for monitor in CHECK_NAMES]


def _monitor_asset(config: ModelConfig, monitor: str) -> dg.AssetsDefinition:
    key = monitor_key(config, monitor)
    check_name = CHECK_NAMES[monitor]
    deps = [dg.AssetKey(["predictions", config.name, "daily"])]
    if monitor == "performance":
        deps.append(dg.AssetKey(["predictions", config.name, "actuals"]))

    @dg.asset(
        key=key,
        deps=deps,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="monitoring",
        kinds={"iceberg"},
        check_specs=[dg.AssetCheckSpec(check_name, asset=key)],
        description=DESCRIPTIONS[monitor]
        + f" Rows in the Iceberg table monitoring.{config.name}_daily.",
    )
    def monitor_asset(context: dg.AssetExecutionContext, training: TrainingResource):
        from mlops_assets.features.store import feature_store
        from mlops_assets.monitoring import monitors, plots

        settings = training.settings()
        days = partition_days(context)
        if not days:
            raise dg.Failure("monitoring is daily-partitioned: pick a day or a range")
        store = feature_store(settings) if monitor in ("feature_drift", "data_quality") else None
        results = []
        for day in days:
            try:
                if monitor == "performance":
                    result = monitors.performance(settings, config, day)
                elif monitor == "prediction_drift":
                    result = monitors.prediction_drift(settings, config, day)
                elif monitor == "feature_drift":
                    result = monitors.feature_drift(settings, config, store, day)
                else:
                    result = monitors.data_quality(settings, config, store, day)
            except monitors.MonitoringError as err:
                raise dg.Failure(f"{monitor} on {day}: {err}") from None
            results.append(result)
            context.log.info(f"{monitor} {day}: {result.status} {result.summary}")
        monitors.write_results(settings, config, results)
        last = results[-1]
        breached = [str(r.day) for r in results if r.breached]
        metadata = {
            **monitors.summary_metadata(last),
            "days": len(results),
            "breached_days": ", ".join(breached) or "none",
            "table": monitors.table_name(config),
        }
        table = monitors.read_table(settings, config)
        folder = settings.data_dir / "monitoring" / "plots" / config.name
        png = plots.metric_over_time(table, monitor)
        if png:
            metadata["plot"] = dg.MetadataValue.md(plots.markdown(png, f"{monitor} over time"))
            metadata["plot_file"] = dg.MetadataValue.path(str(plots.save(png, folder, monitor)))
        if monitor == "feature_drift":
            png = plots.drift_per_feature(table, last.day)
            if png:
                metadata["drift_per_feature"] = dg.MetadataValue.md(
                    plots.markdown(png, "PSI per feature")
                )
        yield dg.MaterializeResult(metadata=metadata)
        yield dg.AssetCheckResult(
            check_name=check_name,
            passed=not breached,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "breached_days": ", ".join(breached) or "none",
                "status_last_day": last.status,
                **{
                    k: v
                    for k, v in monitors.summary_metadata(last).items()
                    if isinstance(v, int | float | str)
                },
            },
            description=(
                f"{len(breached)} of {len(results)} day(s) crossed a threshold"
                if breached
                else "within thresholds"
            ),
        )

    return monitor_asset
