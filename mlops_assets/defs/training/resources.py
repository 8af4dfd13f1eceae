import dagster as dg

from mlops_assets.settings import Settings, get_settings


class TrainingResource(dg.ConfigurableResource):
    """Where pipelines run (kfp.local or a KFP cluster) and where models are registered (MLflow),
    both decided by the environment's settings."""

    def settings(self) -> Settings:
        return get_settings()
