import dagster as dg

from mlops_assets.defs.landing.assets import partition_days
from mlops_assets.defs.landing.partitions import daily_partitions
from mlops_assets.defs.training.resources import TrainingResource
from mlops_assets.model_config import ModelConfig


def build_serving_assets(config: ModelConfig) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=["predictions", config.name, "daily"],
        deps=[
            dg.AssetKey(["models", config.name, "promotion"]),
            dg.AssetKey(["warehouse", "gold", "customer_features"]),
            dg.AssetKey(["feast", "registry"]),
        ],
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="serving",
        kinds={"iceberg", "mlflow"},
        description=(
            f"Daily {config.name} predictions for every active customer by the champion, with the label "
            f"engine's risk band, in the Iceberg table predictions.{config.name}_daily (partitioned by "
            "prediction_date; re-running a day replaces it)."
        ),
    )
    def batch_predictions(context: dg.AssetExecutionContext, training: TrainingResource):
        from mlops_assets.features.store import feature_store
        from mlops_assets.serving.batch import ScoringError, score_days

        days = partition_days(context)
        if not days:
            raise dg.Failure("batch predictions are daily-partitioned: pick a day or a range")
        settings = training.settings()
        store = feature_store(settings)
        try:
            result = score_days(settings, config, store, days)
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

    @dg.asset(
        key=["predictions", config.name, "actuals"],
        deps=[batch_predictions.key, dg.AssetKey(["warehouse", "silver", "fct_orders"])],
        group_name="serving",
        kinds={"iceberg"},
        description=(
            f"Delayed actuals for predictions.{config.name}_daily: every scored day whose churn window "
            "has passed in the warehouse gets `actual` and `actual_timestamp` (days still in their "
            "window stay null)."
        ),
    )
    def actuals(context: dg.AssetExecutionContext, training: TrainingResource):
        from mlops_assets.serving.batch import fill_actuals

        result = fill_actuals(training.settings(), config)
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

    return [batch_predictions, actuals]
