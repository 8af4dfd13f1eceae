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

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.features.offline import (
    OfflineFeatureError,
    offline_features_by_day,
)
from mlops_assets.lakehouse.tables import PREDICTIONS, IcebergTable
from mlops_assets.model_config import ModelConfig

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyiceberg.catalog import Catalog

    from mlops_assets.lakehouse.warehouse import Warehouse
    from mlops_assets.training.registry import Registry


class ScoringError(ValueError):
    pass


def predictions_table(config: ModelConfig) -> IcebergTable:
    """The model's predictions table: keyed by its join keys."""
    return PREDICTIONS.with_keys(config.join_keys)


# Rows predicted per call: the trees run in parallel over many days at once, and a range of a
# million-customer shop still never holds more than this many extra feature rows.
CHUNK_ROWS = 500_000


def as_of(day: dt.date) -> dt.datetime:
    """The as-of time of day D's predictions: the end of D (D + 1 00:00 UTC)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


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
        raise ScoringError(f"no {config.entity} with features on {day}")
    from mlops_assets.serving.explain_api import top_reasons

    scores, versions, labels = _predict(config, model, model_version, features, challenger)
    by_version = {model_version: model, **({challenger[1]: challenger[0]} if challenger else {})}
    reasons = top_reasons(config, by_version, features, versions)
    return _rows(config, features, scores, versions, labels, day, now, reasons)


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
    from mlops_assets.training.thresholds import decision_threshold

    names = [c for c in features.columns if c not in config.join_keys]
    X = feature_frame(features, names)
    scores = model.predict_proba(X)[:, 1]
    versions = np.full(len(features), model_version, dtype=object)
    # Each version cuts its scores at its own threshold (`auto`: the one chosen when trained).
    thresholds = np.full(len(features), decision_threshold(config, model))
    if challenger is not None:
        from mlops_assets.serving.deployment import challenger_share

        challenger_model, challenger_version, percent = challenger
        salt = f"{config.name}:{challenger_version}"
        to_challenger = np.array(
            [challenger_share(int(c), salt) < percent for c in features[config.entity]], dtype=bool
        )
        if to_challenger.any():
            scores[to_challenger] = challenger_model.predict_proba(X[to_challenger])[:, 1]
            versions[to_challenger] = challenger_version
            thresholds[to_challenger] = decision_threshold(config, challenger_model)
    labels = apply_rules(scores, features, config.label_engine, thresholds)
    return scores, versions, labels


def _rows(
    config, features, scores, versions, labels, day: dt.date, now: dt.datetime, reasons=None
) -> pa.Table:
    """The day's rows in the predictions table's schema (`reasons`: top_reasons, or None)."""
    import pyarrow.compute as pc

    keys = {k: pa.array(features[k].to_numpy().astype("int64")) for k in config.join_keys}
    ids = keys[config.entity]
    n = len(ids)
    prefix = pa.array([f"{config.name}-{day:%Y%m%d}-"] * n, pa.string())
    timestamp = pa.timestamp("us", tz="UTC")

    def constant(moment: dt.datetime) -> pa.Array:
        micros = int(moment.astimezone(dt.UTC).timestamp() * 1_000_000)
        return pa.array(np.full(n, micros, dtype="int64")).cast(timestamp)

    return pa.table(
        {
            "prediction_id": pc.binary_join_element_wise(prefix, ids.cast(pa.string()), ""),
            **keys,
            "prediction": labels["prediction"],
            "confidence": np.where(labels["prediction"] == 1, scores, 1 - scores),
            "score": scores,
            "risk_band": pa.array(labels["risk_band"], pa.string()),
            "rule": pa.array(labels["rule"], pa.string()),
            "model_version": pa.array(versions, pa.string()),
            "prediction_date": pa.array(np.full(n, np.datetime64(day, "D"))).cast(pa.date32()),
            "prediction_timestamp": constant(as_of(day)),
            "scored_at": constant(now),
            "actual": pa.nulls(n, pa.int32()),
            "actual_timestamp": pa.nulls(n, timestamp),
            "top_reasons": pa.array(reasons if reasons is not None else [None] * n, pa.string()),
        },
        schema=predictions_table(config).schema,
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
    tables, per_day = [], {}
    for chunk in _day_chunks(store, config, days):
        tables += _score_chunk(config, (model, version, challenger), chunk, now)
    for day, rows in zip(days, tables, strict=True):
        per_day[str(day)] = {
            "rows": rows.num_rows,
            "mean_score": float(np.mean(rows["score"].to_numpy())),
            "positive_rate": float(np.mean(rows["prediction"].to_numpy())),
        }
    table = predictions_table(config).open(catalog, config.name)
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


def _day_chunks(store: FeatureStore, config: ModelConfig, days: list[dt.date]):
    """The days' features, read a range at a time: as many days as fit in CHUNK_ROWS rows
    (estimated from the first day), each (day, features)."""
    size, position = 1, 0
    while position < len(days):
        group = days[position : position + size]
        try:
            frames = offline_features_by_day(
                store, config.feature_service, [as_of(d) for d in group], config.entity
            )
        except OfflineFeatureError as err:
            raise ScoringError(str(err)) from None
        for day, features in zip(group, frames, strict=True):
            if features.empty:
                raise ScoringError(f"no {config.entity} with features on {day}")
        chunk, rows = [], 0
        for day, features in zip(group, frames, strict=True):
            if chunk and rows + len(features) > CHUNK_ROWS:
                break
            chunk.append((day, features))
            rows += len(features)
        yield chunk
        position += len(chunk)
        size = max(1, CHUNK_ROWS // max(1, rows // len(chunk)))


def _score_chunk(
    config: ModelConfig,
    models: tuple[Any, str, Any],
    days: list[tuple[dt.date, pd.DataFrame]],
    now: dt.datetime,
) -> list[pa.Table]:
    """Several days' rows predicted (and explained: `explain.top_reasons_k`) in one call, then cut
    back into one table per day."""
    from mlops_assets.serving.explain_api import top_reasons

    model, version, challenger = models
    everything = pd.concat([features for _, features in days], ignore_index=True)
    scores, versions, labels = _predict(config, model, version, everything, challenger)
    by_version = {version: model, **({challenger[1]: challenger[0]} if challenger else {})}
    reasons = top_reasons(config, by_version, everything, versions)
    tables, start = [], 0
    for day, features in days:
        rows = slice(start, start + len(features))
        start += len(features)
        day_labels = {name: values[rows] for name, values in labels.items()}
        day_reasons = reasons[rows] if reasons is not None else None
        tables.append(
            _rows(config, features, scores[rows], versions[rows], day_labels, day, now, day_reasons)
        )
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
    """Fill `actual` for every scored day whose label window has passed in the warehouse, as the
    config's `actuals` say (a label table, or no event in the window). Days still inside their
    window keep null actuals; the filled days are replaced in one commit."""
    from pyiceberg.expressions import In

    spec = config.actuals
    window = pd.Timedelta(days=config.label_window_days)
    schema = predictions_table(config).schema
    table = predictions_table(config).open(catalog, config.name)
    pending = table.scan(
        row_filter="actual IS NULL", selected_fields=("prediction_date",)
    ).to_arrow()
    days = sorted(set(pending["prediction_date"].to_pylist()))
    newest = warehouse.query(
        f"select max({spec.events_timestamp}) as newest from {spec.events_table}"
    )["newest"].iloc[0]
    if pd.isna(newest):
        return {"filled_days": {}, "data_end": None, "pending_days": len(days)}
    # Landed data runs to the end of the newest event's day (the same horizon gold labels use).
    data_end = pd.Timestamp(newest).tz_localize(None).normalize() + pd.Timedelta(days=1)
    due = [day for day in days if pd.Timestamp(day) + pd.Timedelta(days=1) + window <= data_end]
    filled: dict[str, int] = {}
    unlabelled = 0
    if due:
        rows = table.scan(row_filter=In("prediction_date", due)).to_pandas()
        first = pd.Timestamp(min(due)) + pd.Timedelta(days=1)
        known = _actuals_source(warehouse, config, first - window, data_end)
        parts = []
        for day, group in rows.groupby("prediction_date"):
            start = pd.Timestamp(day) + pd.Timedelta(days=1)  # the as-of time
            group = _with_actuals(config, group.copy(), known, start, start + window)
            unlabelled += int(group["actual"].isna().sum())
            parts.append(group)
            filled[str(day)] = int(group["actual"].notna().sum())
        frame = pd.concat(parts, ignore_index=True)
        frame["actual"] = frame["actual"].astype("Int32")
        write_days(table, due, pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
    return {
        "filled_days": filled,
        "data_end": str(data_end),
        "pending_days": len(days) - len(filled),
        "unlabelled_rows": unlabelled,
    }


def _actuals_source(
    warehouse: Warehouse, config: ModelConfig, since: pd.Timestamp, until: pd.Timestamp
) -> pd.DataFrame:
    """What the due days' actuals are read from: the events (entity, time) of a `no_event`
    model, or the label rows (entity, as-of time, label, available at) of a `label_table` one."""
    spec, entity = config.actuals, config.entity
    lo, hi = f"timestamp '{since:%Y-%m-%d %H:%M:%S}'", f"timestamp '{until:%Y-%m-%d %H:%M:%S}'"
    if spec.kind == "no_event":
        ts = spec.events_timestamp
        return warehouse.query(
            f"select {entity}, {ts} as at from {spec.events_table} "
            f"where {ts} >= {lo} and {ts} < {hi}"
        )
    return warehouse.query(
        f"select {entity}, event_timestamp as at, {config.label} as label, label_available_at "
        f"from {config.label_table} where event_timestamp >= {lo} and event_timestamp < {hi}"
    )


def _with_actuals(
    config: ModelConfig,
    group: pd.DataFrame,
    known: pd.DataFrame,
    start: pd.Timestamp,
    known_at: pd.Timestamp,
) -> pd.DataFrame:
    """One scored day's rows with `actual` and `actual_timestamp` (the as-of time + the window)."""
    entity = config.entity
    at = pd.to_datetime(known["at"]).dt.tz_localize(None) if len(known) else known["at"]
    if config.actuals.kind == "no_event":
        later = known[(at >= start) & (at < known_at)]
        group["actual"] = (~group[entity].isin(set(later[entity].tolist()))).astype("int32")
    else:
        # The entity's newest label row at or before the prediction's as-of time.
        rows = known[at < start].assign(at=at[at < start]).sort_values("at")
        label = rows.drop_duplicates(entity, keep="last").set_index(entity)["label"]
        group["actual"] = group[entity].map(label).astype("Int32")
    group["actual_timestamp"] = known_at.tz_localize("UTC")
    group.loc[group["actual"].isna(), "actual_timestamp"] = pd.NaT
    return group
