"""Features and training data: Feast over gold tables, DVC-versioned datasets."""

import dagster as dg

from mlops_assets.defs.features.assets import (
    churn_training_dataset,
    feast_online_features,
    feast_registry,
)
from mlops_assets.defs.features.checks import training_dataset_checks
from mlops_assets.defs.features.resources import FeatureStoreResource

defs = dg.Definitions(
    assets=[feast_registry, feast_online_features, churn_training_dataset],
    asset_checks=[training_dataset_checks],
    resources={"feature_store": FeatureStoreResource()},
)
