"""Online lookups for one feature service, by the model's join keys (one, like churn's
`customer_id`, or several, like `order_id` and `customer_id`: each feature view is read with the
keys of its own entities).

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
    """`join_keys`: the keys a row is given by, in the order `read` takes them (one key: a row is
    an int; several: a tuple of ints in this order)."""

    def __init__(
        self,
        store: FeatureStore,
        service_name: str,
        join_keys: Sequence[str] | str = ("customer_id",),
    ):
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
        self.join_keys = [join_keys] if isinstance(join_keys, str) else list(join_keys)
        self._single = len(self.join_keys) == 1
        self.views: list[tuple[Any, list[str]]] = []
        # Per stored view: the positions in `join_keys` of the keys its entities join on.
        self._positions: list[tuple[int, ...]] = []
        self.on_demand: list[tuple[Any, list[str]]] = []
        for projection in self._service.feature_view_projections:
            names = [f.name for f in projection.features]
            try:
                view = store.get_feature_view(projection.name)
            except FeatureViewNotFoundException:
                self.on_demand.append((store.get_on_demand_feature_view(projection.name), names))
                continue
            self.views.append((view, names))
            self._positions.append(self._key_positions(service_name, view, projection))
        self.feature_names = [n for _, names in self.views + self.on_demand for n in names]
        self._stored_names = [n for _, names in self.views for n in names]
        self._view_groups: dict[tuple[int, ...], list[int]] = {}
        for index, positions in enumerate(self._positions):
            self._view_groups.setdefault(positions, []).append(index)
        # Request-time inputs of the on-demand views (request_ts): filled with the request's time.
        self.request_fields = sorted(
            {
                f.name
                for odfv, _ in self.on_demand
                for r in odfv.source_request_sources.values()
                for f in r.schema
            }
        )

    @property
    def join_key(self) -> str:
        """The first join key (the only one of a single-key model)."""
        return self.join_keys[0]

    def _key_positions(self, service: str, view: Any, projection: Any) -> tuple[int, ...]:
        """Where the keys of `view`'s entities are among `join_keys` (a projection may rename
        a key with `join_key_map`)."""
        renamed = projection.join_key_map or {}
        wanted = [renamed.get(c.name, c.name) for c in view.entity_columns]
        missing = [k for k in wanted if k not in self.join_keys]
        if missing:
            raise ValueError(
                f"feature view {view.name!r} of feature service {service!r} joins on {missing}, "
                f"which are not among the model's join_keys {self.join_keys}"
            )
        return tuple(self.join_keys.index(k) for k in wanted)

    def _entity_keys(self, entity_rows: Sequence[Any], positions: tuple[int, ...]) -> list[Any]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        if self._single:
            key = [self.join_keys[0]]
            return [
                EntityKey(join_keys=key, entity_values=[Value(int64_val=int(e))])
                for e in entity_rows
            ]
        names = [self.join_keys[p] for p in positions]
        return [
            EntityKey(
                join_keys=names, entity_values=[Value(int64_val=int(row[p])) for p in positions]
            )
            for row in entity_rows
        ]

    def read(
        self, entity_rows: Sequence[Any], request_ts: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Feature dicts (bare feature names), one per row, in the order given; a feature the
        store has no value for is None. A row is an int (one join key) or a tuple of ints in
        `join_keys` order."""
        return self.read_with_timestamps(entity_rows, request_ts)[0]

    def read_with_timestamps(
        self, entity_rows: Sequence[Any], request_ts: datetime | None = None
    ) -> tuple[list[dict[str, Any]], list[datetime | None]]:
        """`read`, plus per row the event timestamp (UTC) of the newest stored feature values
        returned (None when the store has none): the moment those values describe."""
        if not self._direct:
            return self._read_with_sdk(entity_rows, request_ts)
        from feast.infra.key_encoding_utils import serialize_entity_key

        version = self._config.entity_key_serialization_version
        rows: list[dict[str, Any]] = [dict.fromkeys(self._stored_names) for _ in entity_rows]
        newest: list[datetime | None] = [None] * len(rows)
        # Views on the same entities share their keys and one query.
        for positions, members in self._view_groups.items():
            keys = [
                serialize_entity_key(k, entity_key_serialization_version=version)
                for k in self._entity_keys(entity_rows, positions)
            ]
            views = [self.views[m] for m in members]
            found = self._online.read_serialized(self._config, [v for v, _ in views], keys)
            for (_, names), view_found in zip(views, found, strict=True):
                for i, (row, (event_ts, values)) in enumerate(zip(rows, view_found, strict=True)):
                    present = [n for n in names if n in values] if values else None
                    if not present:
                        continue  # the view has none of these features for this row
                    if event_ts is not None and (newest[i] is None or event_ts > newest[i]):
                        newest[i] = event_ts
                    for name in present:
                        row[name] = python_value(values[name])
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

    def _entity_dicts(self, entity_rows: Sequence[Any]) -> list[dict[str, int]]:
        if self._single:
            return [{self.join_keys[0]: int(e)} for e in entity_rows]
        return [
            {k: int(v) for k, v in zip(self.join_keys, row, strict=True)} for row in entity_rows
        ]

    def _read_with_sdk(
        self, entity_rows: Sequence[Any], request_ts: datetime | None
    ) -> tuple[list[dict[str, Any]], list[datetime | None]]:
        try:
            response = self._store.get_online_features(
                features=self._service,
                entity_rows=[
                    {**keys, **dict.fromkeys(self.request_fields, request_ts)}
                    for keys in self._entity_dicts(entity_rows)
                ],
            ).to_dict(include_event_timestamps=True)
        except self._unreachable as err:
            kind = self._config.online_store.type
            raise FeatureStoreUnavailable(
                f"feature store unavailable: the {kind} online store cannot be reached "
                f"({type(err).__name__}: {err})"
            ) from err
        rows = [
            {name: response[name][i] for name in self.feature_names}
            for i in range(len(entity_rows))
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


# Value kinds Feast returns as they are (no list, set, map, timestamp or JSON decoding).
_SCALAR_KINDS = frozenset(
    {"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val", "bytes_val"}
)


def python_value(value: Any) -> Any:
    """A stored Feast value as the SDK returns it (`feast_value_type_to_python_type`), with
    scalars read directly: the SDK's function checks ~20 kinds first, on every feature."""
    kind = value.WhichOneof("val")
    if kind in _SCALAR_KINDS:
        return getattr(value, kind)
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(value)
