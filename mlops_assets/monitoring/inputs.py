"""What the monitors read: the day's predictions (and a trailing window's counts) from Iceberg, the
serving champion and its reference (a sample of its training data with its scores, pulled from
DVC by the version's lineage and cached), and the version's holdout ROC AUC from MLflow."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlops_assets.model_config import ModelConfig
from mlops_assets.monitoring.results import MonitoringError
from mlops_assets.settings import Settings
from mlops_assets.training.registry import CHAMPION, Registry, alias_version, client, load_model

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyiceberg.catalog import Catalog

REFERENCE_ROWS = 20_000
# What the model learned the world looks like just before it was trained: the training split's
# last four weeks (the whole split would read a shop's growth as drift).
REFERENCE_WEEKS = 4


@dataclass
class MonitorInputs:
    """Everything a monitor reads, for one model."""

    config: ModelConfig
    catalog: Catalog
    registry: Registry
    settings: Settings  # the data folder: the reference cache and the DVC pulls
    store: FeatureStore | None = None  # the monitors that read features
    days: list[dt.date] = field(default_factory=list)  # the run's days: their features read at once
    _holdout_aucs: dict[str, float | None] = field(default_factory=dict, repr=False)
    _features: dict[dt.date, pd.DataFrame] = field(default_factory=dict, repr=False)

    def features(self, day: dt.date) -> pd.DataFrame:
        """The model's entities and features as of the end of `day` (what it scored that day);
        the first call reads every day of the run in one pass."""
        from mlops_assets.features.offline import offline_features_by_day

        if day not in self._features:
            wanted = [d for d in self.days if d not in self._features] if day in self.days else []
            wanted = wanted or [day]
            moments = [
                dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
                for d in wanted
            ]
            frames = offline_features_by_day(
                self.store, self.config.feature_service, moments, self.config.entity
            )
            self._features.update(zip(wanted, frames, strict=True))
        return self._features[day]

    def predictions(self, day: dt.date) -> pd.DataFrame:
        from pyiceberg.expressions import EqualTo

        from mlops_assets.serving.batch import predictions_table

        table = predictions_table(self.config).open(self.catalog, self.config.name)
        return table.scan(row_filter=EqualTo("prediction_date", day)).to_pandas()

    def daily_counts(self, first: dt.date, last: dt.date) -> dict[dt.date, int]:
        """Predictions per day in [first, last], from one scan."""
        import pyarrow.compute as pc
        from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

        from mlops_assets.serving.batch import predictions_table

        table = predictions_table(self.config).open(self.catalog, self.config.name)
        days = table.scan(
            row_filter=And(
                GreaterThanOrEqual("prediction_date", first),
                LessThanOrEqual("prediction_date", last),
            ),
            selected_fields=("prediction_date",),
        ).to_arrow()["prediction_date"]
        counts = pc.value_counts(days)
        days, n = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
        return {day: count for day, count in zip(days, n, strict=True) if day is not None}

    def champion(self) -> str:
        name = self.config.registered_model
        version = alias_version(client(self.registry), name, CHAMPION)
        if version is None:
            raise MonitoringError(f"model {name} has no champion to monitor")
        return version

    def holdout_auc(self, version: str) -> float | None:
        """The version's ROC AUC on its training holdout, as logged to MLflow (asked once per
        version: a logged run's metrics do not change)."""
        if version not in self._holdout_aucs:
            self._holdout_aucs[version] = self._logged_auc(version)
        return self._holdout_aucs[version]

    def _logged_auc(self, version: str) -> float | None:
        mlflow_client = client(self.registry)
        try:
            run_id = mlflow_client.get_model_version(self.config.registered_model, version).run_id
            return mlflow_client.get_run(run_id).data.metrics.get("model_test_roc_auc")
        except Exception:  # an unregistered version (e.g. a deleted one): no relative floor
            return None

    def reference(self, version: str) -> pd.DataFrame:
        """A sample of the version's training split with the version's scores (`__score`),
        cached per version under data/monitoring/reference/."""
        folder = self.settings.data_dir / "monitoring" / "reference"
        path = folder / f"{self.config.name}-v{version}.parquet"
        if path.exists():
            return pd.read_parquet(path)
        folder.mkdir(parents=True, exist_ok=True)
        frame = self._reference(version)
        frame.to_parquet(path, index=False)
        return frame

    def _reference(self, version: str) -> pd.DataFrame:
        from mlops_assets.datasets.versioning import pull
        from mlops_assets.training.estimators import dataset_schema, read_split

        name = self.config.registered_model
        md5 = client(self.registry).get_model_version(name, version).tags.get("dvc_md5")
        if not md5:
            raise MonitoringError(f"{name} v{version} has no dvc_md5 tag: no reference")
        with tempfile.TemporaryDirectory(dir=self.settings.data_dir) as tmp:
            dataset = pull(self.settings, md5, Path(tmp) / "dataset")
            names = dataset_schema(dataset)["features"]
            train = read_split(dataset, "train")
        if "event_timestamp" in train.columns:
            ts = pd.to_datetime(train["event_timestamp"])
            train = train[ts >= ts.max() - pd.Timedelta(weeks=REFERENCE_WEEKS)]
        sample = train.sample(min(len(train), REFERENCE_ROWS), random_state=0)
        model = load_model(self.registry, name, version)
        columns = [str(c) for c in model.feature_names_in_]
        # The model's own inputs (raw timestamps are not features; recency is).
        out = sample[[n for n in names if n in columns]].copy()
        out["__score"] = model.predict_proba(sample[columns])[:, 1]
        return out
