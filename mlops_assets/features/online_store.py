"""A SQLite online store that keeps the newest event per entity, one row per entity and view.

Two differences from Feast's stock SQLite store, both needed here:
- monotonic: an upsert only replaces a row with a newer event (or the same event created later), so
  re-materializing an older day never overwrites newer values (the Redis store behaves the same);
- compact: one row per entity and feature view holding the view's values as one serialized
  `RepeatedValue`, instead of one row per feature. That is what lets `bulk_materialize` load a
  million customers in seconds, and it makes a read one indexed lookup per view.

Rows written through Feast (`FeatureStore.materialize`, `write_to_online_store`) and by
`mlops_assets.features.bulk` are byte-identical (tested).

`CheckedLocalProvider` is the embedded profile's Feast provider (`provider:` in
feature_repo/feature_store.yaml): Feast's local provider, except that it refuses a window Feast
would record wrongly, so `feast materialize-incremental` fails with the reason instead of writing
nothing and recording an inverted interval.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from feast import Entity, FeatureView
from feast.infra.infra_object import InfraObject
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _table_id
from feast.infra.passthrough_provider import PassthroughProvider
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.utils import make_tzaware, to_naive_utc

from mlops_assets.features.windows import check_window

LAYOUTS = "mlops_feature_layouts"


class MonotonicSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal[  # type: ignore[assignment]
        "mlops_assets.features.online_store.MonotonicSqliteOnlineStore"
    ] = "mlops_assets.features.online_store.MonotonicSqliteOnlineStore"


def table_name(config: RepoConfig, view: FeatureView) -> str:
    base = _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    return f"{base}__rows"


def epoch_seconds(ts: datetime) -> int:
    """Whole epoch seconds of a (naive = UTC) time, as the stock store stores them."""
    return int(to_naive_utc(ts).replace(tzinfo=UTC).timestamp())


def upsert_sql(table: str) -> str:
    return (
        f'INSERT INTO "{table}" (entity_key, layout_id, feature_values, event_ts, created_ts) '
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(entity_key) DO UPDATE SET "
        "layout_id = excluded.layout_id, feature_values = excluded.feature_values, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts "
        f'WHERE excluded.event_ts > "{table}".event_ts OR (excluded.event_ts = "{table}".event_ts '
        f'AND coalesce(excluded.created_ts, 0) >= coalesce("{table}".created_ts, 0))'
    )


@functools.lru_cache(maxsize=256)
def _select_sql(tables: tuple[str, ...], n_keys: int) -> str:
    """One SELECT over `tables` (UNION ALL), each row tagged with its table's position."""
    marks = ",".join("?" * n_keys)
    return " UNION ALL ".join(
        f'SELECT {i}, entity_key, layout_id, feature_values, event_ts FROM "{t}" '
        f"WHERE entity_key IN ({marks})"
        for i, t in enumerate(tables)
    )


class MonotonicSqliteOnlineStore(SqliteOnlineStore):
    def connection(self, config: RepoConfig) -> sqlite3.Connection:
        conn = self._get_conn(config)
        if getattr(self, "_layouts_ready", None) is not conn:  # once per connection
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LAYOUTS} "
                "(id INTEGER PRIMARY KEY, table_name TEXT, feature_names TEXT, UNIQUE(table_name, feature_names))"
            )
            self._layouts_ready = conn
        return conn

    def layout_id(self, conn: sqlite3.Connection, table: str, names: Sequence[str]) -> int:
        """The id of the value order `names` for `table` (a view's schema may change over time).
        A hash of both, not a counter: the store's bytes must not depend on which view was written
        first (the Feast CLI and the SDK order views differently). A store written before keeps
        the ids it has."""
        encoded = json.dumps(list(names))
        digest = hashlib.sha256(json.dumps([table, encoded]).encode()).digest()
        conn.execute(
            f"INSERT OR IGNORE INTO {LAYOUTS} (id, table_name, feature_names) VALUES (?, ?, ?)",
            (int.from_bytes(digest[:8], "big") >> 1, table, encoded),
        )
        row = conn.execute(
            f"SELECT id FROM {LAYOUTS} WHERE table_name = ? AND feature_names = ?", (table, encoded)
        ).fetchone()
        if row is None:  # a 63-bit hash collision with another layout
            raise RuntimeError(f"no layout id for {table} {encoded}")
        return int(row[0])

    def _layouts(self, conn: sqlite3.Connection, table: str) -> dict[int, list[str]]:
        rows = conn.execute(
            f"SELECT id, feature_names FROM {LAYOUTS} WHERE table_name = ?", (table,)
        )
        return {i: json.loads(names) for i, names in rows}

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        conn = self.connection(config)
        name = table_name(config, table)
        names = [f.name for f in table.features]
        version = config.entity_key_serialization_version
        with conn:
            layout = self.layout_id(conn, name, names)
            rows = [
                (
                    serialize_entity_key(key, entity_key_serialization_version=version),
                    layout,
                    RepeatedValue(
                        val=[values.get(n, ValueProto()) for n in names]
                    ).SerializeToString(),
                    epoch_seconds(event_ts),
                    epoch_seconds(created_ts) if created_ts is not None else None,
                )
                for key, values, event_ts, created_ts in data
            ]
            conn.executemany(upsert_sql(name), rows)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        version = config.entity_key_serialization_version
        keys = [
            serialize_entity_key(k, entity_key_serialization_version=version) for k in entity_keys
        ]
        found = self.read_serialized(config, [table], keys)[0]
        if not requested_features:
            return found
        wanted = set(requested_features)
        return [
            (ts, None if values is None else {n: v for n, v in values.items() if n in wanted})
            for ts, values in found
        ]

    def read_serialized(
        self, config: RepoConfig, views: Sequence[FeatureView], keys: list[bytes]
    ) -> list[list[tuple[datetime | None, dict[str, ValueProto] | None]]]:
        """Per view, per key: (event time, every stored value by feature name), or (None, None)
        where the view has no row for the key. `keys` are serialized entity keys every view is
        keyed by; one query reads all the views (the model server's feature lookup)."""
        conn = self.connection(config)
        names = [table_name(config, view) for view in views]
        found: list[dict[bytes, tuple]] = [{} for _ in names]
        for i, key, layout, blob, ts in conn.execute(
            _select_sql(tuple(names), len(keys)), keys * len(names)
        ):
            found[i][key] = (layout, blob, ts)
        # A layout id is a hash of its table and names: once read, its names never change.
        cache = self.__dict__.setdefault("_layout_cache", {})
        result = []
        for name, hits in zip(names, found, strict=True):
            layouts = cache.get(name, {})
            if any(layout not in layouts for layout, _, _ in hits.values()):
                layouts = cache[name] = self._layouts(conn, name)
            view_result: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
            for key in keys:
                hit = hits.get(key)
                if hit is None:
                    view_result.append((None, None))
                    continue
                layout, blob, ts = hit
                values = RepeatedValue.FromString(blob).val
                stamp = datetime.fromtimestamp(ts, tz=UTC)
                view_result.append((stamp, dict(zip(layouts[layout], values, strict=True))))
            result.append(view_result)
        return result

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        conn = self.connection(config)
        with conn:
            for view in tables_to_keep:
                conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{table_name(config, view)}" '
                    "(entity_key BLOB PRIMARY KEY, layout_id INTEGER, feature_values BLOB, "
                    "event_ts INTEGER, created_ts INTEGER) WITHOUT ROWID"
                )
            for view in tables_to_delete:
                conn.execute(f'DROP TABLE IF EXISTS "{table_name(config, view)}"')
                conn.execute(
                    f"DELETE FROM {LAYOUTS} WHERE table_name = ?", (table_name(config, view),)
                )

    def plan(self, config: RepoConfig, desired_registry_proto: RegistryProto) -> list[InfraObject]:
        # Tables are managed by update(); the stock plan would describe the stock layout.
        return []


class CheckedLocalProvider(PassthroughProvider):
    """Feast's `local` provider that refuses, before anything is written or recorded, the windows
    Feast would record as a wrong materialization interval:

    - a start after the end. `materialize-incremental` starts a view at its latest recorded end,
      or at now - ttl when none is recorded: on data older than the TTL (this project's simulated
      2025) that start is after the end, Feast writes nothing and still records the interval,
      moving the watermark to the end;
    - an end in the future: the watermark would pass now and later data be skipped (feast #4222).

    It also points the offline store's DuckDB (ibis's default connection) at the profile's S3
    endpoint, if it has one: every process that reads gold through Feast creates this provider
    first, the Feast CLI's included (`feast materialize` on the services profile).
    """

    def __init__(self, config: RepoConfig):
        from mlops_assets.lakehouse.duck import configure_ibis_default
        from mlops_assets.settings import get_settings

        super().__init__(config)
        configure_ibis_default(get_settings().s3_env())

    def materialize_single_feature_view(
        self,
        config: RepoConfig,
        feature_view: FeatureView,
        start_date: datetime,
        end_date: datetime,
        registry: Any,
        project: str,
        tqdm_builder: Callable[[int], Any],
        disable_event_timestamp: bool = False,
    ) -> None:
        try:
            check_window(start_date, end_date, allow_empty=True)
        except ValueError as err:
            hint = ""
            inverted = make_tzaware(start_date) > make_tzaware(end_date)
            if inverted and not getattr(feature_view, "materialization_intervals", []):
                hint = (
                    " (no materialization is recorded for this view yet, so Feast starts at now - "
                    "ttl): run `feast materialize <start> <end>` or the Dagster asset "
                    "feast/online/features first"
                )
            elif inverted:
                hint = f" (the view is already materialized up to {start_date.isoformat()})"
            raise ValueError(f"feature view {feature_view.name}: {err}{hint}") from None
        super().materialize_single_feature_view(
            config,
            feature_view,
            start_date,
            end_date,
            registry,
            project,
            tqdm_builder,
            disable_event_timestamp,
        )
