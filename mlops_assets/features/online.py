"""Online lookups for one feature service.

On the embedded SQLite store: the store's own `online_read` per feature view plus the on-demand
transformation, without the SDK's per-call planning (about 3x faster). On other stores (Redis in
prod) the SDK is already efficient (one pipelined round trip for all views), so it is used as is.
Either way the values are those of `FeatureStore.get_online_features` (the tests compare them).

An online store that cannot be reached (Redis down or restarting) raises `FeatureStoreUnavailable`
within a fraction of a second, which the model server answers with a 503: the server itself stays
up and recovers by itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureStore


class FeatureStoreUnavailable(RuntimeError):
    """The online store cannot be reached right now (refused, reset or timed out connections);
    the message names the store's error. A retry later may succeed."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What a store that cannot be reached raises: OS-level connection errors and, when redis-py is
    installed (the Redis online store), its own (which are not OSErrors)."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        return errors
    return (*errors, RedisConnectionError, RedisTimeoutError)


# Reads from Redis: a failed call is retried twice, 0.1 s then 0.2 s later (a pooled connection that
# Redis closed is replaced), then FeatureStoreUnavailable. redis-py's default, which Feast keeps,
# retries 3 times after up to 2, 4 and 8 s, while the request (and the server's event loop) waits.
REDIS_RETRIES = 2
REDIS_BACKOFF_BASE_SECONDS = 0.05


def _fail_fast_on_redis(store: FeatureStore) -> None:
    """Give the Redis client Feast reads with (the provider's, the one `get_online_features` uses)
    a short retry policy; other stores are left as they are."""
    try:
        from feast.infra.online_stores.redis import RedisOnlineStore
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError:  # no Redis support installed: no Redis store either
        return
    online = store._get_provider().online_store
    if isinstance(online, RedisOnlineStore):
        client = online._get_client(store.config.online_store)  # connects on first use only
        backoff = ExponentialBackoff(cap=1.0, base=REDIS_BACKOFF_BASE_SECONDS)
        client.set_retry(Retry(backoff, REDIS_RETRIES))


class OnlineFeatureReader:
    def __init__(self, store: FeatureStore, service_name: str, join_key: str = "customer_id"):
        from feast.errors import FeatureViewNotFoundException
        from feast.infra.online_stores.helpers import get_online_store_from_config

        from mlops_assets.features.online_store import MonotonicSqliteOnlineStore

        self._store = store
        self._config = store.config
        self._online = get_online_store_from_config(store.config.online_store)
        self._direct = isinstance(self._online, MonotonicSqliteOnlineStore)
        self._unreachable = _connection_errors()
        if not self._direct:
            _fail_fast_on_redis(store)
        self._service = store.get_feature_service(service_name)
        self.join_key = join_key
        self.views: list[tuple[Any, list[str]]] = []
        self.on_demand: list[tuple[Any, list[str]]] = []
        for projection in self._service.feature_view_projections:
            names = [f.name for f in projection.features]
            try:
                self.views.append((store.get_feature_view(projection.name), names))
            except FeatureViewNotFoundException:
                self.on_demand.append((store.get_on_demand_feature_view(projection.name), names))
        self.feature_names = [n for _, names in self.views + self.on_demand for n in names]
        # Request-time inputs of the on-demand views (request_ts): filled with the request's time.
        self.request_fields = sorted(
            {
                f.name
                for odfv, _ in self.on_demand
                for r in odfv.source_request_sources.values()
                for f in r.schema
            }
        )

    def read(
        self, entity_ids: Sequence[int], request_ts: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Feature dicts (bare feature names), one per entity, in the order given; a feature the
        store has no value for is None."""
        return self.read_with_timestamps(entity_ids, request_ts)[0]

    def read_with_timestamps(
        self, entity_ids: Sequence[int], request_ts: datetime | None = None
    ) -> tuple[list[dict[str, Any]], list[datetime | None]]:
        """`read`, plus per entity the event timestamp (UTC) of the newest stored feature values
        returned (None when the store has none): the moment those values describe."""
        if not self._direct:
            return self._read_with_sdk(entity_ids, request_ts)
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        keys = [
            EntityKey(join_keys=[self.join_key], entity_values=[Value(int64_val=int(e))])
            for e in entity_ids
        ]
        rows: list[dict[str, Any]] = [{} for _ in keys]
        newest: list[datetime | None] = [None] * len(keys)
        for view, names in self.views:
            found = self._online.online_read(self._config, view, keys, names)
            for i, (row, (event_ts, values)) in enumerate(zip(rows, found, strict=True)):
                if values and event_ts is not None and (newest[i] is None or event_ts > newest[i]):
                    newest[i] = event_ts
                for name in names:
                    value = (values or {}).get(name)
                    row[name] = None if value is None else feast_value_type_to_python_type(value)
        for odfv, names in self.on_demand:
            inputs: dict[str, list[Any]] = {
                name: [row.get(name) for row in rows]
                for source in odfv.source_feature_view_projections.values()
                for name in (f.name for f in source.features)
            }
            for name in self.request_fields:
                inputs[name] = [request_ts] * len(rows)
            outputs = odfv.feature_transformation.udf(inputs)
            for name in names:
                for row, value in zip(rows, outputs[name], strict=True):
                    row[name] = value
        return rows, newest

    def _read_with_sdk(
        self, entity_ids: Sequence[int], request_ts: datetime | None
    ) -> tuple[list[dict[str, Any]], list[datetime | None]]:
        try:
            response = self._store.get_online_features(
                features=self._service,
                entity_rows=[
                    {self.join_key: int(e), **dict.fromkeys(self.request_fields, request_ts)}
                    for e in entity_ids
                ],
            ).to_dict(include_event_timestamps=True)
        except self._unreachable as err:
            kind = self._config.online_store.type
            raise FeatureStoreUnavailable(
                f"feature store unavailable: the {kind} online store cannot be reached "
                f"({type(err).__name__}: {err})"
            ) from err
        rows = [
            {name: response[name][i] for name in self.feature_names} for i in range(len(entity_ids))
        ]
        stored = [n for _, names in self.views for n in names]
        newest: list[datetime | None] = []
        for i, row in enumerate(rows):
            # Feast reports seconds since the epoch per feature (0 where it has no value).
            seconds = max(
                (response[f"{n}__ts"][i] for n in stored if row.get(n) is not None), default=0
            )
            newest.append(datetime.fromtimestamp(seconds, tz=UTC) if seconds else None)
        return rows, newest
