"""Fraud online, through the user's door: a fraud champion deployed beside churn's into the one local
model server of the served shop (tests/serving/serving_world.py), asked for real orders of the last
materialized day by (order_id, customer_id) in V1 and V2; its scores are the MLflow champion's on
the features Feast's `get_online_features` returns for the same rows, churn answers in the same
process meanwhile, a client's mistakes are clear 4xx, and the inference log records fraud's rows
with both keys."""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.model_config import model_configs
from mlops_assets.serving.rollout import deploy
from mlops_assets.testing import register_quick_champion
from mlops_assets.training.registry import load_model
from tests.serving.serving_world import BASE, call
from tests.serving.serving_world import customers as _customers

pytestmark = pytest.mark.slow

FRAUD = model_configs()["fraud"]
V1 = f"/v1/models/{FRAUD.name}:predict"
V2 = f"/v2/models/{FRAUD.name}/infer"
UNKNOWN = 10**12  # no order or customer has this id


@pytest.fixture(scope="module")
def fraud(shop, tmp_path_factory):
    """A fraud champion trained on the shop's gold.order_features / gold.fraud_labels and deployed
    into the shop's running server beside churn; the last materialized day's orders (order rows
    have a 1-day TTL: they are asked for as of that day) and that request time. Afterwards fraud
    is unloaded and its deployment forgotten: the shop serves churn alone again."""
    res, registry, deployer = shop["resources"], shop["registry"], shop["deployer"]
    dataset = tmp_path_factory.mktemp("fraud") / "dataset"
    labels = Labels.of(FRAUD)
    build_training_set(shop["store"], labels, load_labels(res.warehouse, labels), dataset)
    version = register_quick_champion(registry, FRAUD, dataset)
    orders = res.warehouse.query(
        "select order_id, customer_id, event_timestamp from gold.order_features "
        "where cast(event_timestamp as date) = "
        "(select max(cast(event_timestamp as date)) from gold.order_features) "
        "order by event_timestamp, order_id"
    )
    assert len(orders) >= 20, orders
    request_ts = pd.Timestamp(orders["event_timestamp"].max()).tz_localize("UTC").isoformat()
    deploy(registry, deployer, FRAUD, actor="test", reason="fraud beside churn")
    try:
        yield {
            "version": version,
            "orders": orders.head(40),
            "request_ts": request_ts,
            "dataset": dataset,
        }
    finally:
        deployer.stop(FRAUD.name)
        _forget_deployment(registry, FRAUD.name)


def _forget_deployment(registry, model: str) -> None:
    """Drop `model`'s row of the deployments table: a server started later (another module's
    fixture restarts the shop's) loads every model that has a spec, and must not load fraud."""
    from mlops_assets.serving.deployment import DEPLOYMENTS
    from mlops_assets.training.decisions import decisions_engine

    with decisions_engine(registry).begin() as conn:
        conn.execute(DEPLOYMENTS.delete().where(DEPLOYMENTS.c.model == model))


def _pairs(fraud: dict, n: int | None = None) -> list[tuple[int, int]]:
    orders = fraud["orders"] if n is None else fraud["orders"].head(n)
    return [
        (int(o), int(c)) for o, c in zip(orders["order_id"], orders["customer_id"], strict=True)
    ]


def _v1(pairs: list[tuple[int, int]], request_ts: str) -> dict:
    return {
        "instances": [{"order_id": o, "customer_id": c, "request_ts": request_ts} for o, c in pairs]
    }


def _v2(pairs: list[tuple[int, int]], request_ts: str | None = None) -> dict:
    n = len(pairs)
    inputs = [
        {"name": "order_id", "shape": [n], "datatype": "INT64", "data": [o for o, _ in pairs]},
        {"name": "customer_id", "shape": [n], "datatype": "INT64", "data": [c for _, c in pairs]},
    ]
    if request_ts is not None:
        inputs.append(
            {"name": "request_ts", "shape": [n], "datatype": "BYTES", "data": [request_ts] * n}
        )
    return {"inputs": inputs}


def _no_traceback(answer) -> None:
    text = json.dumps(answer) if not isinstance(answer, str) else answer
    assert "Traceback" not in text and 'File "' not in text, text


def test_fraud_and_churn_are_served_by_one_process(shop, fraud):
    deployer = shop["deployer"]
    churn_state, fraud_state = deployer.state(BASE.name), deployer.state(FRAUD.name)
    assert churn_state["model_loaded"] and fraud_state["model_loaded"]
    assert churn_state["pid"] == fraud_state["pid"]
    assert churn_state["port"] == fraud_state["port"] == shop["port"]
    assert sorted(call(f"{shop['url']}/v1/models")[1]["models"]) == sorted([BASE.name, FRAUD.name])
    assert call(f"{shop['url']}/v2/models/{FRAUD.name}/ready")[0] == 200


def test_fraud_scores_equal_the_champion_on_feasts_online_features(shop, fraud):
    pairs, request_ts = _pairs(fraud), fraud["request_ts"]
    status, answer = call(f"{shop['url']}{V1}", _v1(pairs, request_ts))
    assert status == 200, answer
    assert answer["model_name"] == FRAUD.name
    rows = pd.DataFrame(answer["predictions"])
    assert list(zip(rows["order_id"], rows["customer_id"], strict=True)) == pairs
    assert set(rows["model_version"]) == {fraud["version"]}
    assert set(rows["arm"]) == {"champion"}
    assert set(rows["risk_band"]) <= {b.name for b in FRAUD.label_engine.bands}

    # The same rows straight from Feast's SDK, scored by the MLflow champion.
    store = shop["store"]
    features = store.get_online_features(
        features=store.get_feature_service(FRAUD.feature_service),
        entity_rows=[{"order_id": o, "customer_id": c} for o, c in pairs],
    ).to_df()
    assert features["amount_usd"].notna().all(), "the last day's orders are not online"
    model = load_model(shop["registry"], FRAUD.registered_model, fraud["version"])
    columns = list(model.feature_names_in_)
    assert {"amount_usd", "customer_orders_prev_24h", "plan"} <= set(columns)
    expected = model.predict_proba(features[columns])[:, 1]
    np.testing.assert_allclose(rows["score"].to_numpy(), expected, rtol=1e-9)

    # V2, one INT64 tensor per key: the same scores.
    status, answer = call(f"{shop['url']}{V2}", {"id": "fraud-v2", **_v2(pairs, request_ts)})
    assert status == 200, answer
    assert answer["id"] == "fraud-v2" and answer["model_name"] == FRAUD.name
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["score"]["datatype"] == "FP64" and outputs["score"]["shape"] == [len(pairs)]
    np.testing.assert_allclose(outputs["score"]["data"], rows["score"], rtol=1e-12)
    assert set(outputs["model_version"]["data"]) == {fraud["version"]}


def test_churn_answers_in_the_same_process_while_fraud_is_asked(shop, fraud):
    pairs, request_ts = _pairs(fraud, 5), fraud["request_ts"]
    ids = _customers(shop, 5)
    churn_body = {
        "inputs": [{"name": "customer_id", "shape": [5], "datatype": "INT64", "data": ids}]
    }

    def ask(which: str):
        if which == "churn":
            return which, call(f"{shop['url']}/v2/models/{BASE.name}/infer", churn_body)
        return which, call(f"{shop['url']}{V2}", _v2(pairs, request_ts))

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, ["churn", "fraud"] * 10))
    for which, (status, answer) in answers:
        assert status == 200, (which, answer)
        assert answer["model_name"] == (BASE.name if which == "churn" else FRAUD.name)
        scores = {o["name"]: o for o in answer["outputs"]}["score"]["data"]
        assert len(scores) == 5 and all(0.0 <= s <= 1.0 for s in scores)
    assert shop["deployer"].state(BASE.name)["pid"] == shop["deployer"].state(FRAUD.name)["pid"]


def test_a_missing_customer_id_is_a_400_that_names_it(shop, fraud):
    (order, _), request_ts = _pairs(fraud, 1)[0], fraud["request_ts"]
    status, answer = call(
        f"{shop['url']}{V1}", {"instances": [{"order_id": order, "request_ts": request_ts}]}
    )
    assert status == 400 and answer["reason"] == "invalid_input", answer
    assert "customer_id" in answer["error"], answer
    _no_traceback(answer)
    body = {"inputs": [{"name": "order_id", "shape": [1], "datatype": "INT64", "data": [order]}]}
    status, answer = call(f"{shop['url']}{V2}", body)
    assert status == 400 and "missing input 'customer_id'" in answer["error"], answer
    _no_traceback(answer)


@pytest.mark.parametrize("known_customer", [True, False], ids=["known_customer", "no_customer"])
def test_an_unknown_order_is_a_clear_4xx(shop, fraud, known_customer):
    (_, customer), request_ts = _pairs(fraud, 1)[0], fraud["request_ts"]
    customer = customer if known_customer else UNKNOWN
    for path, body in (
        (V1, _v1([(UNKNOWN, customer)], request_ts)),
        (V2, _v2([(UNKNOWN, customer)], request_ts)),
    ):
        status, answer = call(f"{shop['url']}{path}", body)
        assert 400 <= status < 500, (path, status, answer)
        assert answer["reason"] == "unknown_entity", answer
        assert "unknown order" in answer["error"] and str(UNKNOWN) in answer["error"], answer
        _no_traceback(answer)
    # A known order beside the unknown one does not hide it; the server keeps serving.
    pairs = [*_pairs(fraud, 2), (UNKNOWN, customer)]
    status, answer = call(f"{shop['url']}{V1}", _v1(pairs, request_ts))
    assert status == 400 and answer["reason"] == "unknown_entity", answer
    assert call(f"{shop['url']}{V1}", _v1(_pairs(fraud, 2), request_ts))[0] == 200


def test_the_inference_log_records_fraud_rows_with_both_keys(shop, fraud):
    pairs, request_ts = _pairs(fraud, 6), fraud["request_ts"]
    status, answer = call(
        f"{shop['url']}{V1}", _v1(pairs, request_ts), {"x-request-id": "fraud-log-test"}
    )
    assert status == 200, answer
    catalog = shop["resources"].lakehouse.catalog()
    name = INFERENCE_LOG.name(FRAUD.name)
    assert name == "predictions.fraud_online"
    # The server's log writer commits every log_flush_seconds (1 s): wait for this request's rows.
    deadline = time.monotonic() + 60
    while True:
        log = pd.DataFrame()
        if catalog.table_exists(name):
            log = catalog.load_table(name).scan().to_pandas()
            log = log[log["request_id"] == "fraud-log-test"]
        if len(log) == len(pairs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(log) == len(pairs), log
    assert set(log["model_name"]) == {FRAUD.name}
    assert set(log["model_version"]) == {fraud["version"]}
    keys = [json.loads(k) for k in log["entity_keys"]]
    assert all(set(k) == {"order_id", "customer_id"} for k in keys)
    assert sorted((k["order_id"], k["customer_id"]) for k in keys) == sorted(pairs)
    assert sorted(log["customer_id"]) == sorted(c for _, c in pairs)
    as_of = dt.datetime.fromisoformat(request_ts)
    assert (log["prediction_timestamp"] == pd.Timestamp(as_of)).all()
