"""One DVC-versioned training set per model config: its labels joined point-in-time to its feature
service, split by time, with checks that read what was written."""

import datetime as dt

import dagster as dg

from mlops_assets.defs.keys import FEAST_REGISTRY, dataset_key, feature_table_keys, table_key
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.resources import FeatureStoreResource, WarehouseResource
from mlops_assets.settings import get_settings


class DatasetConfig(dg.Config):
    """Empty: every label known now. A date: only labels whose window had closed by then (how the
    first model of the demo is trained on the history before a drift)."""

    labels_known_by: str | None = None


def build_dataset(model: ModelConfig) -> dg.AssetsDefinition:
    """The model's training set: its labels joined point-in-time to its feature service, split by
    time, versioned with DVC; its checks read the files written."""
    from mlops_assets.defs.features.checks import DATASET_CHECKS, dataset_checks

    key = dataset_key(model)

    @dg.asset(
        key=key,
        deps=[FEAST_REGISTRY, table_key(model.label_table), *feature_table_keys()],
        group_name="features",
        kinds={"feast", "dvc", "parquet"},
        check_specs=[dg.AssetCheckSpec(n, asset=key, description=d) for n, d in DATASET_CHECKS],
        description=(
            f"The {model.feature_service} training set: {model.label_table} joined "
            f"point-in-time to the {model.feature_service} feature service, split by time, "
            "versioned with DVC (hash and remote in metadata)."
        ),
    )
    def dataset(
        context: dg.AssetExecutionContext,
        config: DatasetConfig,
        feature_store: FeatureStoreResource,
        warehouse: WarehouseResource,
    ):
        yield _build(context, model, config.labels_known_by, feature_store, warehouse)
        yield from dataset_checks(model, key)

    return dataset


def _build(context, config: ModelConfig, known_by_text, feature_store, warehouse):
    from mlops_assets.datasets.training_set import (
        DatasetError,
        Labels,
        build_training_set,
        load_labels,
    )
    from mlops_assets.datasets.versioning import VersioningError, commit_and_push, datasets_dir

    settings = get_settings()
    spec = Labels.of(config)
    out_dir = datasets_dir(settings) / config.feature_service
    try:
        known_by = _known_by(known_by_text)
        labels = load_labels(warehouse, spec, known_by)
        summary = build_training_set(feature_store.store(), spec, labels, out_dir)
        version = commit_and_push(settings, config.feature_service)
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


def _known_by(text: str | None) -> dt.datetime | None:
    from mlops_assets.datasets.training_set import DatasetError

    if not text:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    except ValueError:
        raise DatasetError(f"labels_known_by must be a date (YYYY-MM-DD), got {text!r}") from None


@dg.definitions
def datasets() -> dg.Definitions:
    services = {c.feature_service: c for c in model_configs().values()}
    return dg.Definitions(assets=[build_dataset(c) for c in services.values()])
