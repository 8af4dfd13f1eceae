"""Entity keys from the model config: `join_keys` (default: the entity), requests that carry every
key (and name the one missing), and online lookups by several keys that return what Feast's
`get_online_features` returns for the same rows (each feature view read with its own keys)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest

from mlops_assets.features.online import OnlineFeatureReader
from mlops_assets.model_config import ModelConfig, model_configs
from mlops_assets.serving.requests import Rejected, parse_request

FRAUD_KEYS = ("order_id", "customer_id")


def _config(**changes) -> dict:
    values = model_configs()["churn"].model_dump(exclude={"join_keys"})
    return {**values, **changes}


def test_join_keys_default_to_the_entity_which_must_be_one_of_them():
    assert model_configs()["churn"].join_keys == ["customer_id"]
    fraud = ModelConfig.model_validate(_config(entity="order_id", join_keys=list(FRAUD_KEYS)))
    assert fraud.join_keys == list(FRAUD_KEYS)
    assert ModelConfig.model_validate(_config(entity="order_id")).join_keys == ["order_id"]
    with pytest.raises(ValueError, match="entity 'order_id' must be one of join_keys"):
        ModelConfig.model_validate(_config(entity="order_id", join_keys=["customer_id"]))
    with pytest.raises(ValueError, match="twice"):
        ModelConfig.model_validate(_config(join_keys=["customer_id", "customer_id"]))


def test_a_request_carries_every_join_key_and_a_missing_one_is_named():
    keys, times = parse_request(
        {"instances": [{"order_id": 7, "customer_id": 42}, {"customer_id": 1, "order_id": 8}]},
        10,
        FRAUD_KEYS,
    )
    assert keys == {"order_id": [7, 8], "customer_id": [42, 1]} and times == [None, None]
    with pytest.raises(Rejected, match=r"instances\[0\] is missing 'order_id'"):
        parse_request({"instances": [{"customer_id": 42}]}, 10, FRAUD_KEYS)
    with pytest.raises(Rejected, match=r"instances\[0\]\.order_id must be an integer order id"):
        parse_request({"instances": [{"order_id": "x", "customer_id": 1}]}, 10, FRAUD_KEYS)

    def v2(*tensors: tuple[str, list]) -> InferRequest:
        inputs = [InferInput(n, [len(d)], "INT64", d) for n, d in tensors]
        return InferRequest(model_name="fraud", infer_inputs=inputs)

    keys, _ = parse_request(v2(("order_id", [7, 8]), ("customer_id", [42, 1])), 10, FRAUD_KEYS)
    assert keys == {"order_id": [7, 8], "customer_id": [42, 1]}
    with pytest.raises(Rejected, match="missing input 'customer_id'"):
        parse_request(v2(("order_id", [7])), 10, FRAUD_KEYS)
    with pytest.raises(Rejected, match="input 'customer_id' has 1 values for 2 rows"):
        parse_request(v2(("order_id", [7, 8]), ("customer_id", [1])), 10, FRAUD_KEYS)
    with pytest.raises(Rejected, match="unknown inputs"):
        parse_request(v2(("customer_id", [1]), ("user_id", [1])), 10, ("customer_id",))


NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def order_store(tmp_path_factory):
    """A Feast store on the embedded online store with views keyed by the order, by the customer
    and by both, in one feature service."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64
    from feast.value_type import ValueType

    from mlops_assets.features.store import STORE_TYPE

    root = tmp_path_factory.mktemp("order_store")
    order = Entity(name="order", join_keys=["order_id"], value_type=ValueType.INT64)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    frames = {
        "order_stats": pd.DataFrame(
            {"order_id": [1, 2, 3], "amount_usd": [10.5, 99.0, 3.25], "item_count": [1, 4, 2]}
        ),
        "customer_stats": pd.DataFrame({"customer_id": [100, 200], "order_count": [5, 1]}),
        "order_customer": pd.DataFrame(
            {"order_id": [1, 2, 3], "customer_id": [100, 100, 200], "first_order": [0, 0, 1]}
        ),
    }
    views = []
    for name, frame in frames.items():
        frame = frame.assign(event_timestamp=NOW - dt.timedelta(days=1))
        frame.to_parquet(root / f"{name}.parquet")
        keys = [c for c in frame.columns if c.endswith("_id")]
        values = [c for c in frame.columns if c not in (*keys, "event_timestamp")]
        entities = [{"order_id": order, "customer_id": customer}[k] for k in keys]
        schema = [Field(name=v, dtype=Float64 if v == "amount_usd" else Int64) for v in values]
        source = FileSource(path=str(root / f"{name}.parquet"), timestamp_field="event_timestamp")
        views.append(FeatureView(name=name, entities=entities, schema=schema, source=source))
    service = FeatureService(name="fraud_test_v1", features=views)
    config = RepoConfig(
        project="keys_test",
        registry=str(root / "registry.db"),
        provider="local",
        online_store={"type": STORE_TYPE, "path": str(root / "online.db")},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    store = FeatureStore(config=config)
    store.apply([order, customer, *views, service])
    for name, frame in frames.items():
        store.write_to_online_store(name, frame.assign(event_timestamp=NOW - dt.timedelta(days=1)))
    return store


@pytest.mark.parametrize("path", ["direct", "sdk"])
def test_multi_key_lookup_equals_feast_get_online_features(order_store, path):
    reader = OnlineFeatureReader(order_store, "fraud_test_v1", FRAUD_KEYS)
    if path == "sdk":
        reader._direct = False  # the path a Redis store takes
    rows = [(1, 100), (2, 100), (3, 200), (3, 100), (9, 200), (9, 999)]
    found, stamps = reader.read_with_timestamps(rows, NOW)
    expected = order_store.get_online_features(
        features=order_store.get_feature_service("fraud_test_v1"),
        entity_rows=[{"order_id": o, "customer_id": c} for o, c in rows],
    ).to_dict()
    for i, row in enumerate(found):
        assert row == {name: expected[name][i] for name in reader.feature_names}, rows[i]
    assert found[0] == {"amount_usd": 10.5, "item_count": 1, "order_count": 5, "first_order": 0}
    assert found[3]["first_order"] is None  # order 3 belongs to customer 200
    assert stamps[5] is None and stamps[4] is not None  # nothing for (9, 999): an unknown row


def test_a_view_keyed_by_a_key_the_model_does_not_have_is_refused(order_store):
    with pytest.raises(ValueError, match=r"joins on \['order_id'\]"):
        OnlineFeatureReader(order_store, "fraud_test_v1", ("customer_id",))
