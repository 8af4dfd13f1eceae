"""Point-in-time training sets: labels (entity, as-of time, label) joined to a feature service with
Feast's historical retrieval, split by time, written as deterministic Parquet. Which table holds
the labels, and which columns, come from the model config (`Labels.of(config)`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from mlops_assets.lakehouse.warehouse import Warehouse
    from mlops_assets.model_config import ModelConfig

TIMESTAMP = "event_timestamp"  # Feast's as-of column, in the label table and the training set
SPLITS = ("train", "validation", "test")
# Share of distinct as-of times in each split, oldest first: no later snapshot trains a model that
# is evaluated on an earlier one.
SPLIT_SHARES = (0.7, 0.15, 0.15)


class DatasetError(ValueError):
    """Bad input for a training set: the message says what and how many."""

    def __init__(self, message: str, **counts: Any):
        super().__init__(message)
        self.counts = counts


@dataclass(frozen=True)
class Labels:
    """Where a model's labels are: `table` (schema.name in the warehouse), the `entity` key, the
    0/1 `column` and the other join keys its feature service needs (an order model's labels carry
    the customer too); each row has an as-of time (`event_timestamp`) and `label_available_at`."""

    table: str
    entity: str
    column: str
    service: str  # the Feast feature service the labels are joined to
    other_keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: ModelConfig) -> Labels:
        others = tuple(k for k in config.join_keys if k != config.entity)
        return cls(config.label_table, config.entity, config.label, config.feature_service, others)

    @property
    def keys(self) -> list[str]:
        return [self.entity, *self.other_keys]

    @property
    def columns(self) -> list[str]:
        return [*self.keys, TIMESTAMP, self.column]


@dataclass
class DatasetSummary:
    service: str
    path: Path
    rows: dict[str, int]
    positive_rate: dict[str, float]
    time_range: dict[str, tuple[str, str]]
    features: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {
            "feature_service": self.service,
            "rows": sum(self.rows.values()),
            **{f"rows_{k}": v for k, v in self.rows.items()},
            **{f"label_rate_{k}": round(v, 4) for k, v in self.positive_rate.items()},
            "time_range": json.dumps(self.time_range),
            "features": ", ".join(self.features),
            **self.extra,
        }


def load_labels(
    warehouse: Warehouse, spec: Labels, known_by: dt.datetime | None = None
) -> pd.DataFrame:
    """The label table (entity, as-of time, label) from the warehouse; with `known_by`, only the
    labels whose window had closed by then (a training set as it could have been built that day)."""
    where = ""
    if known_by is not None:
        naive = known_by.astimezone(dt.UTC).replace(tzinfo=None) if known_by.tzinfo else known_by
        where = f" where label_available_at <= timestamp '{naive:%Y-%m-%d %H:%M:%S}'"
    try:
        return warehouse.query(f"select {', '.join(spec.columns)} from {spec.table}{where}")
    except Exception as err:  # no such table (yet), an unreachable warehouse: say which
        raise DatasetError(
            f"cannot read {spec.table} from the warehouse ({err}): materialize it first"
        ) from None


def validate_labels(labels: pd.DataFrame, spec: Labels, now: dt.datetime) -> None:
    import pandas as pd

    missing = set(spec.columns) - set(labels.columns)
    if missing:
        raise DatasetError(f"label table lacks columns {sorted(missing)}")
    if labels.empty:
        raise DatasetError("label table is empty: no snapshot has a known label yet", rows=0)
    ts = pd.to_datetime(labels[TIMESTAMP], utc=True)
    future = int((ts > pd.Timestamp(now)).sum())
    if future:
        raise DatasetError(
            f"{future} of {len(labels)} labels have an as-of time in the future "
            f"(after {now:%Y-%m-%d %H:%M} UTC)",
            future_rows=future,
            rows=len(labels),
        )
    nulls = int(labels[spec.columns].isna().any(axis=1).sum())
    if nulls:
        raise DatasetError(
            f"{nulls} of {len(labels)} label rows have a null key, time or label", null_rows=nulls
        )
    bad = int((~labels[spec.column].isin([0, 1])).sum())
    if bad:
        raise DatasetError(f"{bad} labels are not 0/1", bad_labels=bad)


def historical_features(store: FeatureStore, spec: Labels, labels: pd.DataFrame) -> pd.DataFrame:
    """Feast point-in-time join: each row gets the latest feature values at or before its as-of
    time (within the views' TTL), never later ones."""
    import pandas as pd
    from feast.errors import FeastObjectNotFoundException

    try:
        feature_service = store.get_feature_service(spec.service)
    except FeastObjectNotFoundException as err:
        raise DatasetError(f"unknown feature service {spec.service!r}: {err}") from None
    entity_df = labels[spec.columns].copy()
    entity_df[TIMESTAMP] = pd.to_datetime(entity_df[TIMESTAMP], utc=True)
    # On-demand features are measured at the as-of time, as they are at request time online.
    entity_df["request_ts"] = entity_df[TIMESTAMP]
    job = store.get_historical_features(entity_df=entity_df, features=feature_service)
    return job.to_df()


def service_features(store: FeatureStore, service: str) -> tuple[list[str], list[str]]:
    """(stored, on-demand) feature names of a service, in the service's order."""
    on_demand_views = {v.name for v in store.list_on_demand_feature_views()}
    stored, on_demand = [], []
    for projection in store.get_feature_service(service).feature_view_projections:
        names = [f.name for f in projection.features]
        (on_demand if projection.name in on_demand_views else stored).extend(names)
    return stored, on_demand


def build_training_set(
    store: FeatureStore,
    spec: Labels,
    labels: pd.DataFrame,
    out_dir: Path,
    now: dt.datetime | None = None,
) -> DatasetSummary:
    """Validate labels, join features point-in-time, split by time, write Parquet."""
    validate_labels(labels, spec, now or dt.datetime.now(dt.UTC))
    frame, features = _joined(store, spec, labels)
    split_of = _time_splits(frame)
    rows, rate, span = _write_splits(frame, split_of, spec, out_dir)
    schema = {"entity": spec.entity, "timestamp": TIMESTAMP, "label": spec.column}
    if spec.other_keys:
        schema["join_keys"] = spec.keys
    schema["features"] = features
    (out_dir / "schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    return DatasetSummary(spec.service, out_dir, rows, rate, span, features)


def _joined(store: FeatureStore, spec: Labels, labels: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """The labels with their point-in-time features, in a stable order; the feature names."""
    frame = historical_features(store, spec, labels)
    stored, on_demand = service_features(store, spec.service)
    features = stored + on_demand
    unknown = [f for f in features if f not in frame.columns]
    if unknown:
        raise DatasetError(f"feature service {spec.service!r} produced no column for {unknown}")
    # An entity the feature tables do not know (or whose snapshot is older than the TTL) comes back
    # with no feature values at all: refuse rather than train on a silently different population.
    empty = frame[stored].isna().all(axis=1)
    if empty.any():
        raise DatasetError(
            f"{int(empty.sum())} of {len(frame)} label rows found no features (entity unknown to "
            f"the feature views or snapshot older than the TTL), e.g. {spec.entity} "
            f"{frame.loc[empty, spec.entity].head(5).tolist()}",
            rows_without_features=int(empty.sum()),
            rows=len(frame),
        )
    frame = frame.sort_values([TIMESTAMP, spec.entity], kind="stable").reset_index(drop=True)
    return frame[[*spec.keys, TIMESTAMP, *features, spec.column]], features


def _time_splits(frame: pd.DataFrame) -> Any:
    """0/1/2 (train/validation/test) per row, by the shares of distinct as-of times."""
    import numpy as np

    times = np.sort(frame[TIMESTAMP].unique())
    if len(times) < 3:
        raise DatasetError(
            f"need at least 3 distinct as-of times to split by time, got {len(times)}"
        )
    cut1 = times[max(1, int(len(times) * SPLIT_SHARES[0])) - 1]
    cut2 = times[max(2, int(len(times) * (SPLIT_SHARES[0] + SPLIT_SHARES[1]))) - 1]
    cut2 = max(cut2, times[np.searchsorted(times, cut1) + 1])
    return np.where(frame[TIMESTAMP] <= cut1, 0, np.where(frame[TIMESTAMP] <= cut2, 1, 2))


def _write_splits(frame: pd.DataFrame, split_of: Any, spec: Labels, out_dir: Path) -> tuple:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    rows, rate, span = {}, {}, {}
    for i, name in enumerate(SPLITS):
        part = frame[split_of == i]
        table = pa.Table.from_pandas(part, preserve_index=False).replace_schema_metadata(None)
        # Same rows, same options, no pandas metadata: the same inputs give the same bytes (and
        # so the same DVC hash).
        pq.write_table(
            table, out_dir / f"{name}.parquet", compression="zstd", write_statistics=True
        )
        rows[name] = len(part)
        rate[name] = float(part[spec.column].mean()) if len(part) else float("nan")
        span[name] = (str(part[TIMESTAMP].min()), str(part[TIMESTAMP].max()))
    return rows, rate, span
