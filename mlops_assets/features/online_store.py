"""A SQLite online store that keeps the newest event per entity and feature.

Feast's stock SQLite store is last-writer-wins: re-materializing an older day would overwrite newer
values (the Redis store already skips older events). This one upserts with an event-time guard, and
writes a whole batch with one `executemany` instead of one statement per value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.utils import to_naive_utc

STORE_TYPE = "mlops_assets.features.online_store.MonotonicSqliteOnlineStore"


class MonotonicSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal[  # type: ignore[assignment]
        "mlops_assets.features.online_store.MonotonicSqliteOnlineStore"
    ] = STORE_TYPE


class MonotonicSqliteOnlineStore(SqliteOnlineStore):
    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        conn = self._get_conn(config)
        name = _quote_id(
            _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        )
        # Same row layout as the stock store, so its reads and deletes work unchanged. The WHERE
        # makes an older (or equal-time, older-created) event a no-op instead of an overwrite.
        sql = (
            f"INSERT INTO {name} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, NULL, ?, ?) "
            "ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, event_ts = excluded.event_ts, created_ts = excluded.created_ts "
            f"WHERE excluded.event_ts > {name}.event_ts OR (excluded.event_ts = {name}.event_ts "
            f"AND coalesce(excluded.created_ts, 0) >= coalesce({name}.created_ts, 0))"
        )
        version = config.entity_key_serialization_version
        rows = []
        for entity_key, values, event_ts, created_ts in data:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            ts = _epoch(event_ts)
            created = _epoch(created_ts) if created_ts is not None else None
            rows.extend(
                (key, feature, value.SerializeToString(), ts, created)
                for feature, value in values.items()
            )
        with conn:
            conn.executemany(sql, rows)
        if progress:
            progress(len(data))


def _epoch(ts: datetime) -> int:
    # Exactly what the stock store's sqlite adapter stores (whole epoch seconds), so its reads work.
    return int(to_naive_utc(ts).timestamp())
