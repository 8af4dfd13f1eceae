"""Daily monitoring assets, one per model config and monitor of the registry
(mlops_assets/monitoring/registry.py), each with a check that fails when its threshold is crossed;
numbers in the materialization's metadata and plots in Markdown, rows in the Iceberg table."""

import dagster as dg

from mlops_assets.defs.keys import actuals_key, monitor_key, predictions_key
from mlops_assets.defs.partitions import daily_partitions, partition_days
from mlops_assets.lakehouse.tables import MONITORING
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.monitoring.registry import MONITORS, Monitor
from mlops_assets.resources import (
    FeatureStoreResource,
    LakehouseCatalogResource,
    ModelRegistryResource,
)
from mlops_assets.settings import get_settings


def build_monitor(model: ModelConfig, monitor: Monitor) -> dg.AssetsDefinition:
    key = monitor_key(model, monitor.name)
    deps = [predictions_key(model)]
    if monitor.reads_actuals:
        deps.append(actuals_key(model))

    @dg.asset(
        key=key,
        deps=deps,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="monitoring",
        kinds={"iceberg"},
        check_specs=[dg.AssetCheckSpec(monitor.check, asset=key, description=monitor.description)],
        description=f"{monitor.description} Rows in the Iceberg table {MONITORING.name(model.name)}.",
    )
    def monitor_asset(
        context: dg.AssetExecutionContext,
        lakehouse: LakehouseCatalogResource,
        feature_store: FeatureStoreResource,
        model_registry: ModelRegistryResource,
    ):
        from mlops_assets.monitoring.inputs import MonitorInputs
        from mlops_assets.monitoring.results import MonitoringError, write_results

        days = partition_days(context, "monitoring is")
        catalog = lakehouse.catalog()
        store = feature_store.store() if monitor.reads_features else None
        registry = model_registry.registry()
        inputs = MonitorInputs(model, catalog, registry, get_settings(), store, days)
        results = []
        for day in days:
            try:
                result = monitor.run(inputs, day)
            except MonitoringError as err:
                raise dg.Failure(f"{monitor.name} on {day}: {err}") from None
            results.append(result)
            context.log.info(f"{monitor.name} {day}: {result.status} {result.summary}")
        write_results(catalog, model, results)
        yield dg.MaterializeResult(metadata=_metadata(catalog, model, monitor, results))
        yield _check(monitor, results)

    return monitor_asset


def _metadata(catalog, model: ModelConfig, monitor: Monitor, results: list) -> dict:
    from mlops_assets.monitoring import plots
    from mlops_assets.monitoring.results import read_table, summary_metadata

    last = results[-1]
    breached = [str(r.day) for r in results if r.breached]
    metadata = {
        **summary_metadata(last),
        "days": len(results),
        "breached_days": ", ".join(breached) or "none",
        "table": MONITORING.name(model.name),
    }
    table = read_table(catalog, model)
    folder = get_settings().data_dir / "monitoring" / "plots" / model.name
    png = plots.metric_over_time(table, monitor.name)
    if png:
        metadata["plot"] = dg.MetadataValue.md(plots.markdown(png, f"{monitor.name} over time"))
        metadata["plot_file"] = dg.MetadataValue.path(str(plots.save(png, folder, monitor.name)))
    if monitor.day_plot:
        png = getattr(plots, monitor.day_plot)(table, last.day)
        if png:
            title = f"{monitor.day_plot.replace('_', ' ')} on {last.day}"
            metadata[monitor.day_plot] = dg.MetadataValue.md(plots.markdown(png, title))
    return metadata


def _check(monitor: Monitor, results: list) -> dg.AssetCheckResult:
    from mlops_assets.monitoring.results import summary_metadata

    last = results[-1]
    breached = [str(r.day) for r in results if r.breached]
    return dg.AssetCheckResult(
        check_name=monitor.check,
        passed=not breached,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "breached_days": ", ".join(breached) or "none",
            "status_last_day": last.status,
            **{k: v for k, v in summary_metadata(last).items() if isinstance(v, int | float | str)},
        },
        description=(
            f"{len(breached)} of {len(results)} day(s) crossed a threshold"
            if breached
            else "within thresholds"
        ),
    )


@dg.definitions
def monitoring() -> dg.Definitions:
    models = model_configs().values()
    return dg.Definitions(
        assets=[build_monitor(m, mon) for m in models for mon in MONITORS.values()]
    )
