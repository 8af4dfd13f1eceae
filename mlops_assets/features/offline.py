"""Point-in-time feature rows for a whole population at once, read straight from the gold files
Feast's views point at: what batch scoring and the feature monitors score and compare.

The population is every entity of the model's own key with a row inside its views' TTL before the
as-of time (every active customer for a customer model, the day's orders for an order model).
Views keyed by another join key (a customer view in an order model's service) are joined as of
each population row's own event time: the newest row at or before it, within that view's TTL,
as Feast's historical retrieval does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


class OfflineFeatureError(ValueError):
    pass


SNAPSHOT_CACHE_BYTES = 128 * 2**20  # larger files (a million-customer shop) are read in place
CACHED_FILES = 4  # gold files kept in memory at once (a service reads one per join key)
_loaded: dict[str, tuple[tuple, Any]] = {}  # path -> (identity, connection), oldest first
_loading = threading.Lock()


@contextlib.contextmanager
def snapshots(path: str) -> Iterator[tuple[Any, str]]:
    """A DuckDB cursor and the relation holding the rows of `path` (a file or an object-store
    URI). A file of moderate size is read once and kept in memory while it is unchanged (same
    size and modification time): scoring 49 days or monitoring 18 asks for the same file 49 or 36
    times. A larger one is read in place."""
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
    identity = (size, modified)
    with _loading:
        cached = _loaded.get(path)
        if cached is None or cached[0] != identity:
            con = duckdb.connect()
            configure_s3(con)
            con.execute("create table snapshots as select * from read_parquet(?)", [path])
            # A replaced connection closes once its last cursor is gone.
            _loaded.pop(path, None)
            _loaded[path] = (identity, con)
            while len(_loaded) > CACHED_FILES:
                _loaded.pop(next(iter(_loaded)))
        cursor = _loaded[path][1].cursor()  # one per caller: threads may score at once
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
        raise OfflineFeatureError(
            f"the gold table {path} does not exist (build the lakehouse first)"
        )
    return int(info.size), info.mtime_ns


@dataclass(frozen=True)
class _Source:
    """The stored views of a service that read one gold file with one join key."""

    path: str
    key: str
    timestamp: str
    ttl: dt.timedelta
    columns: tuple[str, ...]


def _sources(store: FeatureStore, service: str) -> list[_Source]:
    views = {v.name: v for v in store.list_feature_views()}
    fs = store.get_feature_service(service)
    grouped: dict[tuple[str, str], list] = {}
    for projection in fs.feature_view_projections:
        view = views.get(projection.name)
        if view is None:
            continue  # on-demand: computed after the join
        keys = [c.name for c in view.entity_columns]
        if len(keys) != 1:
            raise OfflineFeatureError(
                f"view {view.name!r} has join keys {keys}; batch reads take one key per view"
            )
        group = grouped.setdefault((view.batch_source.path, keys[0]), [])
        group.append((view, [f.name for f in projection.features]))
    sources = []
    for (path, key), members in grouped.items():
        timestamps = {v.batch_source.timestamp_field for v, _ in members}
        if len(timestamps) != 1:
            raise OfflineFeatureError(f"views over {path} disagree on the timestamp: {timestamps}")
        sources.append(
            _Source(
                path=path,
                key=key,
                timestamp=timestamps.pop(),
                ttl=max(v.ttl for v, _ in members),
                columns=tuple(c for _, names in members for c in names),
            )
        )
    return sources


def _quoted(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def offline_features(
    store: FeatureStore, service: str, as_of: dt.datetime, entity: str | None = None
) -> pd.DataFrame:
    """Every `entity` with a row of its own views inside their TTL before `as_of` (the newest
    one), its other join keys, and every feature of `service`; on-demand features come from the
    registry's own transformation, with the request time `as_of`. `entity` defaults to the key
    of the service's first view."""
    return offline_features_by_day(store, service, [as_of], entity)[0]


def offline_features_by_day(
    store: FeatureStore, service: str, as_ofs: list[dt.datetime], entity: str | None = None
) -> list[pd.DataFrame]:
    """`offline_features` at each of `as_ofs`, read and joined in one pass (a range of days
    costs about what one day does)."""
    sources = _sources(store, service)
    if not sources:
        raise OfflineFeatureError(f"feature service {service!r} has no stored view")
    entity = entity or sources[0].key
    own = [s for s in sources if s.key == entity]
    if len(own) != 1:
        raise OfflineFeatureError(
            f"feature service {service!r} must read {entity!r} from one gold table, "
            f"found {len(own)}"
        )
    other_keys = [s.key for s in sources if s.key != entity]
    frame = _population(own[0], other_keys, as_ofs)
    for source in sources:
        if source.key != entity:
            frame = _joined_as_of(frame, source)
    frame = _plain_dtypes(frame.drop(columns=["__ts"]), keep=[entity, *other_keys])
    _on_demand(store, service, frame)
    days = frame.pop("__as_of")
    return [frame[(days == _naive(t)).to_numpy()].reset_index(drop=True) for t in as_ofs]


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _plain_dtypes(frame: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """Nullable integer features (an as-of join that found no row) as float64 with NaN, as
    Feast's historical retrieval returns them and the models were trained on."""
    import pandas as pd

    for column in frame.columns:
        dtype = frame[column].dtype
        nullable = isinstance(dtype, pd.api.extensions.ExtensionDtype)
        if column not in keep and nullable and pd.api.types.is_integer_dtype(dtype):
            frame[column] = frame[column].astype("float64")
    return frame


def _population(source: _Source, other_keys: list[str], as_ofs: list[dt.datetime]) -> pd.DataFrame:
    """Per as-of time (`__as_of`), each key's newest row within the TTL before it."""
    key, ts = source.key, source.timestamp
    columns = ", ".join(f'rows."{c}"' for c in [*other_keys, *source.columns])
    with snapshots(source.path) as (con, relation):
        return con.execute(
            f"""
            select times.__as_of, rows."{key}", {columns}, rows."{ts}" as __ts
            from (select unnest(?::timestamp[]) as __as_of) as times
            inner join {relation} as rows
                on rows."{ts}" <= times.__as_of
                and rows."{ts}" > times.__as_of - to_seconds({source.ttl.total_seconds()})
            qualify row_number() over (
                partition by times.__as_of, rows."{key}" order by rows."{ts}" desc
            ) = 1
            order by times.__as_of, rows."{key}"
            """,
            [[_naive(t) for t in as_ofs]],
        ).df()


def _joined_as_of(frame: pd.DataFrame, source: _Source) -> pd.DataFrame:
    """`frame` with `source`'s features as of each row's time (`__ts`): the newest row of the
    same key at or before it, if it lies within the source's TTL; nulls otherwise. Row order is
    kept. The join runs where the source's rows are (its cached connection)."""
    if frame.empty:
        return frame.assign(**dict.fromkeys(source.columns, float("nan")))
    key, ts = source.key, source.timestamp
    newest, oldest = frame["__ts"].max(), frame["__ts"].min()
    within_ttl = f'matched."{ts}" > population.__ts - to_seconds({source.ttl.total_seconds()})'
    features = ", ".join(
        f'case when {within_ttl} then matched."{c}" end as "{c}"' for c in source.columns
    )
    with snapshots(source.path) as (con, relation):
        con.register("population_rows", frame.assign(__order=np.arange(len(frame))))
        try:
            return con.execute(
                f"""
                with matched as (
                    select {_quoted([key, ts, *source.columns])} from {relation}
                    where "{ts}" <= ? and "{ts}" > ?
                        and "{key}" in (select "{key}" from population_rows)
                )
                select population.* exclude (__order), {features}
                from population_rows as population
                asof left join matched
                    on matched."{key}" = population."{key}" and population.__ts >= matched."{ts}"
                order by population.__order
                """,
                [newest, oldest - source.ttl],
            ).df()
        finally:
            con.unregister("population_rows")


def _on_demand(store: FeatureStore, service: str, frame: pd.DataFrame) -> None:
    """Add the service's on-demand features to `frame`, computed by the registry's own
    transformations on the joined columns (their batch path is vectorized)."""
    import pandas as pd

    stored = {v.name for v in store.list_feature_views()}
    for projection in store.get_feature_service(service).feature_view_projections:
        if projection.name in stored:
            continue
        odfv = store.get_on_demand_feature_view(projection.name)
        inputs = {
            f.name: frame[f.name]
            for source in odfv.source_feature_view_projections.values()
            for f in source.features
        }
        for request in odfv.source_request_sources.values():
            for field in request.schema:
                # The row's as-of time, a datetime64 column (pandas parses Python datetimes
                # one by one).
                inputs[field.name] = pd.to_datetime(frame["__as_of"]).dt.tz_localize("UTC")
        outputs = odfv.feature_transformation.udf(inputs)
        for feature in projection.features:
            frame[feature.name] = np.asarray(outputs[feature.name], dtype="float64")
