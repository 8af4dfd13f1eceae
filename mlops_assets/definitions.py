"""The code location: merges the domain definitions. No work happens here at import."""

import dagster as dg

from mlops_assets.defs import automation, dbt, features, landing, monitoring, serving, training
from mlops_assets.defs.executors import executor_for
from mlops_assets.settings import get_environment

defs = dg.Definitions.merge(
    landing.defs,
    dbt.defs,
    features.defs,
    training.defs,
    serving.defs,
    monitoring.defs,
    automation.defs,
    dg.Definitions(executor=executor_for(get_environment())),
)
