"""Per model config: daily batch predictions into Iceberg (partitioned, a day replaced in one
commit) and the delayed actuals that fill them once their label window has passed."""

import dagster as dg

from mlops_assets.defs.keys import (
    FEAST_REGISTRY,
    actuals_key,
    feature_table_keys,
    predictions_key,
    promotion_key,
    table_key,
)
from mlops_assets.defs.partitions import daily_partitions, partition_days
from mlops_assets.lakehouse.tables import PREDICTIONS
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.resources import (
    FeatureStoreResource,
    LakehouseCatalogResource,
    ModelRegistryResource,
    WarehouseResource,
)


def build_batch_predictions(model: ModelConfig) -> dg.AssetsDefinition:
    table = PREDICTIONS.name(model.name)

    @dg.asset(
        key=predictions_key(model),
        deps=[
            promotion_key(model),
            FEAST_REGISTRY,
            *feature_table_keys(),
        ],
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="serving",
        kinds={"iceberg", "mlflow"},
        description=(
            f"Daily {model.name} predictions for every active entity by the champion, with the "
            f"label engine's risk band, in the Iceberg table {table} (partitioned by "
            "prediction_date; re-running a day replaces it)."
        ),
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        lakehouse: LakehouseCatalogResource,
        feature_store: FeatureStoreResource,
        model_registry: ModelRegistryResource,
    ):
        from mlops_assets.serving.batch import ScoringError, score_days

        days = partition_days(context, "batch predictions are")
        try:
            result = score_days(
                lakehouse.catalog(),
                feature_store.store(),
                model_registry.registry(),
                model,
                days,
            )
        except ScoringError as err:
            raise dg.Failure(f"scoring {days[0]} .. {days[-1]} failed: {err}") from None
        for day, summary in result["days"].items():
            context.log.info(f"{day}: {summary['rows']} predictions by v{result['model_version']}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result["rows"],
                "days": len(days),
                "model_version": result["model_version"],
                "canary": result["canary"],
                "last_day_mean_score": round(result["mean_score"], 4),
                "last_day_risk_bands": str(result["risk_bands"]),
                "table": result["table"],
                "iceberg_snapshot_id": str(result["snapshot_id"]),
            }
        )

    return batch_predictions


def build_actuals(model: ModelConfig) -> dg.AssetsDefinition:
    @dg.asset(
        key=actuals_key(model),
        deps=[predictions_key(model), table_key("silver.fct_orders")],
        group_name="serving",
        kinds={"iceberg"},
        description=(
            f"Delayed actuals for {PREDICTIONS.name(model.name)}: every scored day whose "
            f"{model.label_window_days}-day label window has passed in the warehouse gets `actual` "
            "and `actual_timestamp` (days still in their window stay null)."
        ),
    )
    def actuals(
        context: dg.AssetExecutionContext,
        lakehouse: LakehouseCatalogResource,
        warehouse: WarehouseResource,
    ):
        from mlops_assets.serving.batch import fill_actuals

        result = fill_actuals(lakehouse.catalog(), warehouse, model)
        context.log.info(
            f"filled {len(result['filled_days'])} day(s); {result['pending_days']} still waiting"
        )
        return dg.MaterializeResult(
            metadata={
                "filled_days": len(result["filled_days"]),
                "filled_rows": sum(result["filled_days"].values()),
                "pending_days": result["pending_days"],
                "data_end": result["data_end"],
            }
        )

    return actuals


@dg.definitions
def batch() -> dg.Definitions:
    models = model_configs().values()
    return dg.Definitions(
        assets=[f(m) for m in models for f in (build_batch_predictions, build_actuals)]
    )
