"""Daily batch predictions into an Iceberg table partitioned by day.

For a day D every active customer (a feature snapshot within the views' TTL before the end of D) is
scored by the champion with offline features, passed through the label engine, and the day's
partition is replaced in one Iceberg commit: re-running a day replaces it exactly.

Times in the table (as-of semantics): `prediction_timestamp` is the moment the prediction is valid
for, the as-of time of its features (D + 1 00:00 UTC); `scored_at` is the wall clock of the run
that scored it; `actual_timestamp` is when the actual became known (the as-of time + the churn
window), so the label delay `actual_timestamp - prediction_timestamp` is the window, never negative.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.lakehouse.tables import PREDICTIONS
from mlops_assets.model_config import ModelConfig

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyiceberg.catalog import Catalog

    from mlops_assets.lakehouse.warehouse import Warehouse
    from mlops_assets.training.registry import Registry


class ScoringError(ValueError):
    pass


# Rows predicted per call: the trees run in parallel over many days at once, and a range of a
# million-customer shop still never holds more than this many extra feature rows.
CHUNK_ROWS = 500_000


def as_of(day: dt.date) -> dt.datetime:
    """The as-of time of day D's predictions: the end of D (D + 1 00:00 UTC)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


SNAPSHOT_CACHE_BYTES = 128 * 2**20  # larger files (a million-customer shop) are read in place
_loaded: dict[str, Any] = {}  # the last local snapshot file read: its identity and connection
_loading = threading.Lock()


@contextlib.contextmanager
def _snapshots(path: str) -> Iterator[tuple[Any, str]]:
    """A DuckDB cursor and the relation holding the feature snapshots of `path` (a file or an
    object-store URI). A file of moderate size is read once and kept in memory while it is
    unchanged (same size and modification time): scoring 49 days or monitoring 18 asks for the
    same file 49 or 36 times. A larger one is read in place."""
    import duckdb

    from mlops_assets.lakehouse.duck import configure_s3

    size, modified = _file_version(path)
    if size > SNAPSHOT_CACHE_BYTES:
        # Read in place: DuckDB prunes row groups by the timestamp filter.
        with duckdb.connect() as con:
            configure_s3(con)
            quoted = path.replace("'", "''")
            yield con, f"read_parquet('{quoted}')"
        return
    identity = (path, size, modified)
    with _loading:
        if _loaded.get("identity") != identity:
            con = duckdb.connect()
            configure_s3(con)
            con.execute("create table snapshots as select * from read_parquet(?)", [path])
            # A replaced connection closes once its last cursor is gone.
            _loaded.update(identity=identity, connection=con)
        cursor = _loaded["connection"].cursor()  # one per caller: threads may score at once
    try:
        yield cursor, "snapshots"
    finally:
        cursor.close()


def _file_version(path: str) -> tuple[int, int | None]:
    """Size and modification time (ns) of a file or an object (pyarrow's filesystems)."""
    import pyarrow.fs as pafs

    from mlops_assets.lakehouse.files import filesystem

    fs, key = filesystem(path)
    info = fs.get_file_info(key)
    if info.type != pafs.FileType.File:
        raise ScoringError(f"the gold table {path} does not exist (build the lakehouse first)")
    return int(info.size), info.mtime_ns


def offline_features(store: FeatureStore, service: str, as_of: dt.datetime) -> pd.DataFrame:
    """What Feast's point-in-time join returns for every active entity at `as_of`: the newest
    snapshot at or before it, within the views' TTL, read in one vectorized pass; on-demand features
    come from the registry's own transformation."""
    views = {v.name: v for v in store.list_feature_views()}
    fs = store.get_feature_service(service)
    stored = [
        (views[p.name], [f.name for f in p.features])
        for p in fs.feature_view_projections
        if p.name in views
    ]
    sources = {v.batch_source.path for v, _ in stored}
    if len(sources) != 1:
        raise ScoringError(
            f"batch scoring reads one gold table; service {service!r} uses {sorted(sources)}"
        )
    view = stored[0][0]
    ttl = max(v.ttl for v, _ in stored)
    ts = view.batch_source.timestamp_field
    key = view.entity_columns[0].name
    columns = [c for _, names in stored for c in names]
    naive = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    with _snapshots(next(iter(sources))) as (con, relation):
        frame = con.execute(
            f"""
            select "{key}", {", ".join(f'"{c}"' for c in columns)}
            from {relation}
            where "{ts}" <= ? and "{ts}" > ?
            qualify row_number() over (partition by "{key}" order by "{ts}" desc) = 1
            order by "{key}"
            """,
            [naive, naive - ttl],
        ).df()
    for projection in fs.feature_view_projections:
        if projection.name in views:
            continue
        odfv = store.get_on_demand_feature_view(projection.name)
        # Only the transformation's inputs, as columns (its batch path is vectorized).
        inputs = {
            f.name: frame[f.name]
            for source in odfv.source_feature_view_projections.values()
            for f in source.features
        }
        for request in odfv.source_request_sources.values():
            for field in request.schema:
                # A datetime64 column, not Python datetimes: pandas parses those one by one.
                inputs[field.name] = pd.Series(pd.Timestamp(as_of), index=frame.index)
        outputs = odfv.feature_transformation.udf(inputs)
        for feature in projection.features:
            frame[feature.name] = np.asarray(outputs[feature.name], dtype="float64")
    return frame  # customer_id + every service feature, one row per active customer


def score(
    config: ModelConfig,
    model: Any,
    model_version: str,
    features: pd.DataFrame,
    day: dt.date,
    now: dt.datetime,
    challenger: tuple[Any, str, int] | None = None,
) -> pa.Table:
    """Score every row with the champion; with a canary (challenger model, version, percent) the
    same customers the online split sends to the challenger are scored by it (sticky hash).
    `prediction_timestamp` is the day's as-of time, `scored_at` is `now` (the run's wall clock)."""
    if features.empty:
        raise ScoringError(f"no active customers with features on {day}")
    scores, versions, labels = _predict(config, model, model_version, features, challenger)
    return _rows(config, features, scores, versions, labels, day, now)


def _predict(
    config: ModelConfig,
    model: Any,
    model_version: str,
    features: pd.DataFrame,
    challenger: tuple[Any, str, int] | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Scores, model versions and label-engine outputs of any number of rows (one day or many:
    one call over many days lets the trees predict in parallel over all of them)."""
    from mlops_assets.serving.label_engine import apply_rules
    from mlops_assets.training.estimators import feature_frame

    names = [c for c in features.columns if c != "customer_id"]
    X = feature_frame(features, names)
    scores = model.predict_proba(X)[:, 1]
    versions = np.full(len(features), model_version, dtype=object)
    if challenger is not None:
        from mlops_assets.serving.deployment import challenger_share

        challenger_model, challenger_version, percent = challenger
        salt = f"{config.name}:{challenger_version}"
        to_challenger = np.array(
            [challenger_share(int(c), salt) < percent for c in features["customer_id"]], dtype=bool
        )
        if to_challenger.any():
            scores[to_challenger] = challenger_model.predict_proba(X[to_challenger])[:, 1]
            versions[to_challenger] = challenger_version
    labels = apply_rules(scores, features, config.label_engine, config.decision_threshold)
    return scores, versions, labels


def _rows(config, features, scores, versions, labels, day: dt.date, now: dt.datetime) -> pa.Table:
    """The day's rows in the predictions table's schema."""
    import pyarrow.compute as pc

    ids = pa.array(features["customer_id"].to_numpy().astype("int64"))
    n = len(ids)
    prefix = pa.array([f"{config.name}-{day:%Y%m%d}-"] * n, pa.string())
    timestamp = pa.timestamp("us", tz="UTC")

    def constant(moment: dt.datetime) -> pa.Array:
        micros = int(moment.astimezone(dt.UTC).timestamp() * 1_000_000)
        return pa.array(np.full(n, micros, dtype="int64")).cast(timestamp)

    return pa.table(
        {
            "prediction_id": pc.binary_join_element_wise(prefix, ids.cast(pa.string()), ""),
            "customer_id": ids,
            "prediction": labels["prediction"],
            "confidence": np.where(scores >= config.decision_threshold, scores, 1 - scores),
            "score": scores,
            "risk_band": pa.array(labels["risk_band"], pa.string()),
            "rule": pa.array(labels["rule"], pa.string()),
            "model_version": pa.array(versions, pa.string()),
            "prediction_date": pa.array(np.full(n, np.datetime64(day, "D"))).cast(pa.date32()),
            "prediction_timestamp": constant(as_of(day)),
            "scored_at": constant(now),
            "actual": pa.nulls(n, pa.int32()),
            "actual_timestamp": pa.nulls(n, timestamp),
        },
        schema=PREDICTIONS.schema,
    )


def write_days(table: Any, days: list[dt.date], rows: pa.Table) -> None:
    """Replace the days' partitions in one commit (a re-run never duplicates; a range is one
    snapshot, not one per day)."""
    import warnings

    from pyiceberg.expressions import In

    with warnings.catch_warnings():
        # A first run of a day has nothing to replace; pyiceberg warns about that.
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        table.overwrite(rows, overwrite_filter=In("prediction_date", list(days)))


def score_days(
    catalog: Catalog,
    store: FeatureStore,
    registry: Registry,
    config: ModelConfig,
    days: list[dt.date],
) -> dict[str, Any]:
    """Score each day with the champion (and the deployed canary's share with the challenger), then
    replace all those days in one commit. Returns per-day summaries and the totals."""
    model, version, challenger = _models(registry, config)
    now = dt.datetime.now(dt.UTC)
    tables, per_day, pending = [], {}, []
    for position, day in enumerate(days):
        features = offline_features(store, config.feature_service, as_of(day))
        if features.empty:
            raise ScoringError(f"no active customers with features on {day}")
        pending.append((day, features))
        if position == len(days) - 1 or sum(len(f) for _, f in pending) >= CHUNK_ROWS:
            tables += _score_chunk(config, (model, version, challenger), pending, now)
            pending = []
    for day, rows in zip(days, tables, strict=True):
        per_day[str(day)] = {
            "rows": rows.num_rows,
            "mean_score": float(np.mean(rows["score"].to_numpy())),
            "positive_rate": float(np.mean(rows["prediction"].to_numpy())),
        }
    table = PREDICTIONS.open(catalog, config.name)
    write_days(table, days, pa.concat_tables(tables))
    last = tables[-1]
    bands = pd.Series(last["risk_band"].to_numpy(zero_copy_only=False)).value_counts().to_dict()
    return {
        "rows": sum(t.num_rows for t in tables),
        "days": per_day,
        "model_version": version,
        "canary": f"v{challenger[1]} at {challenger[2]}%" if challenger else "none",
        "mean_score": per_day[str(days[-1])]["mean_score"],
        "positive_rate": per_day[str(days[-1])]["positive_rate"],
        "risk_bands": bands,
        "table": PREDICTIONS.name(config.name),
        "snapshot_id": table.refresh().current_snapshot().snapshot_id,
    }


def _score_chunk(
    config: ModelConfig,
    models: tuple[Any, str, Any],
    days: list[tuple[dt.date, pd.DataFrame]],
    now: dt.datetime,
) -> list[pa.Table]:
    """Several days' rows predicted in one call, then cut back into one table per day."""
    model, version, challenger = models
    everything = pd.concat([features for _, features in days], ignore_index=True)
    scores, versions, labels = _predict(config, model, version, everything, challenger)
    tables, start = [], 0
    for day, features in days:
        rows = slice(start, start + len(features))
        start += len(features)
        day_labels = {name: values[rows] for name, values in labels.items()}
        tables.append(_rows(config, features, scores[rows], versions[rows], day_labels, day, now))
    return tables


def _models(registry: Registry, config: ModelConfig) -> tuple[Any, str, Any]:
    """The champion (model, version) and, while a canary of it runs, (challenger, version, %)."""
    from mlops_assets.serving.rollout import current_spec
    from mlops_assets.training.registry import CHAMPION, alias_version, client, load_model

    version = alias_version(client(registry), config.registered_model, CHAMPION)
    if version is None:
        raise ScoringError(f"model {config.registered_model} has no champion to score with")
    model = load_model(registry, config.registered_model, version)
    # The deployed canary, if any, gets the same share of customers as online.
    spec = current_spec(registry, config)
    if not (spec and spec.challenger_version and spec.canary_percent):
        return model, version, None
    if spec.champion_version != version:
        return model, version, None
    challenger = load_model(registry, config.registered_model, spec.challenger_version)
    return model, version, (challenger, spec.challenger_version, spec.canary_percent)


def fill_actuals(catalog: Catalog, warehouse: Warehouse, config: ModelConfig) -> dict[str, Any]:
    """Fill `actual` for every scored day whose label window has passed in the warehouse: churned
    (1) if the customer placed no order in the window after the prediction's as-of time. Days
    still inside their window keep null actuals; the filled days are replaced in one commit."""
    from pyiceberg.expressions import In

    window = pd.Timedelta(days=config.label_window_days)
    table = PREDICTIONS.open(catalog, config.name)
    pending = table.scan(
        row_filter="actual IS NULL", selected_fields=("prediction_date",)
    ).to_arrow()
    days = sorted(set(pending["prediction_date"].to_pylist()))
    orders = warehouse.query("select customer_id, ordered_at from silver.fct_orders")
    # Landed data runs to the end of the last order's day (the same horizon gold labels use).
    data_end = orders["ordered_at"].max().normalize() + pd.Timedelta(days=1)
    due = [day for day in days if pd.Timestamp(day) + pd.Timedelta(days=1) + window <= data_end]
    filled: dict[str, int] = {}
    if due:
        rows = table.scan(row_filter=In("prediction_date", due)).to_pandas()
        parts = []
        for day, group in rows.groupby("prediction_date"):
            start = pd.Timestamp(day) + pd.Timedelta(days=1)  # the as-of time
            known_at = start + window
            later = orders[(orders["ordered_at"] >= start) & (orders["ordered_at"] < known_at)]
            active = set(later["customer_id"].unique().tolist())
            group = group.copy()
            group["actual"] = (~group["customer_id"].isin(active)).astype("int32")
            group["actual_timestamp"] = known_at.tz_localize("UTC")
            parts.append(group)
            filled[str(day)] = len(group)
        frame = pd.concat(parts, ignore_index=True)
        schema = PREDICTIONS.schema
        write_days(table, due, pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
    return {
        "filled_days": filled,
        "data_end": str(data_end),
        "pending_days": len(days) - len(filled),
    }
