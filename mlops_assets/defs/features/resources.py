from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.settings import Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore


class FeatureStoreResource(dg.ConfigurableResource):
    """The Feast store of the current environment (SQLite online + DuckDB offline locally, Redis +
    Trino in prod) and the DVC repo that versions training sets."""

    def settings(self) -> Settings:
        return get_settings()

    def store(self) -> "FeatureStore":
        from mlops_assets.features.store import feature_store

        return feature_store(self.settings())
