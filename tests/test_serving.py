"""The online predictor on a real local KServe model server (separate process, 127.0.0.1), with a
real Feast online store, real MLflow versions and the real Iceberg inference log."""

import datetime as dt
import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from mlops_assets.lakehouse.catalog import catalog
from mlops_assets.serving.deployment import (
    DeploymentError,
    challenger_share,
    read_spec,
    stop_server,
)
from mlops_assets.serving.rollout import RolloutError, deploy, promote, rollback
from mlops_assets.training.promotion import history, set_alias
from mlops_assets.training.registry import CHALLENGER, CHAMPION, alias_version, client, load_model
from tests.conftest import register_quick_model
from tests.serving_world import BASE, REQUEST_TS, error_counts, served_shop
from tests.serving_world import customers as _world_customers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    with served_shop(tmp_path_factory.mktemp("online")) as world:
        yield world


def _call(url: str, body: bytes | dict | None = None, headers: dict | None = None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST" if data is not None else "GET",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read().decode()
            return response.status, (json.loads(raw) if raw.startswith(("{", "[")) else raw)
    except urllib.error.HTTPError as err:
        raw = err.read().decode()
        return err.code, (json.loads(raw) if raw.startswith("{") else raw)


def _customers(shop, n: int) -> list[int]:
    return _world_customers(shop, n)


def _predict(shop, ids: list[int]) -> dict:
    body = {"instances": [{"customer_id": c, "request_ts": REQUEST_TS} for c in ids]}
    status, answer = _call(f"{shop['url']}/v1/models/churn:predict", body)
    assert status == 200, answer
    return answer


def test_health_readiness_and_model_listing(shop):
    assert _call(f"{shop['url']}/v2/health/live")[0] == 200
    assert _call(f"{shop['url']}/v2/health/ready")[0] == 200
    assert _call(f"{shop['url']}/v1/models/churn") == (200, {"name": "churn", "ready": True})
    assert _call(f"{shop['url']}/v2/models/churn/ready")[0] == 200
    assert _call(f"{shop['url']}/v1/models")[1] == {"models": ["churn"]}


def test_v1_scores_equal_the_mlflow_model_on_feast_features(shop):
    ids = _customers(shop, 40)
    answer = _predict(shop, ids)
    rows = pd.DataFrame(answer["predictions"])
    assert rows["customer_id"].tolist() == ids
    assert set(rows["risk_band"]) <= {b.name for b in BASE.label_engine.bands}
    # The same features straight from Feast's SDK, scored by the same MLflow versions.
    features = (
        shop["store"]
        .get_online_features(
            features=shop["store"].get_feature_service("churn_v1"),
            entity_rows=[
                {"customer_id": c, "request_ts": dt.datetime.fromisoformat(REQUEST_TS)} for c in ids
            ],
        )
        .to_df()
    )
    settings = shop["settings"]
    for version, group in rows.groupby("model_version"):
        model = load_model(settings, "churn", version)
        frame = features.set_index("customer_id").loc[group["customer_id"]]
        expected = model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]
        np.testing.assert_allclose(group["score"].to_numpy(), expected, rtol=1e-9)
    expected_arm = [
        "challenger" if challenger_share(c, f"churn:{shop['challenger']}") < 30 else "champion"
        for c in ids
    ]
    assert rows["arm"].tolist() == expected_arm
    version_of = {"champion": shop["champion"], "challenger": shop["challenger"]}
    assert rows["model_version"].tolist() == [version_of[a] for a in expected_arm]


def test_v2_infer_answers_with_typed_outputs_and_the_version(shop):
    ids = _customers(shop, 5)
    body = {
        "id": "req-v2",
        "inputs": [
            {"name": "customer_id", "shape": [5], "datatype": "INT64", "data": ids},
            {"name": "request_ts", "shape": [5], "datatype": "BYTES", "data": [REQUEST_TS] * 5},
        ],
    }
    status, answer = _call(f"{shop['url']}/v2/models/churn/infer", body)
    assert status == 200, answer
    assert answer["id"] == "req-v2" and answer["model_name"] == "churn"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["score"]["datatype"] == "FP64" and outputs["score"]["shape"] == [5]
    assert all(0.0 <= s <= 1.0 for s in outputs["score"]["data"])
    assert set(outputs["model_version"]["data"]) <= {shop["champion"], shop["challenger"]}
    assert set(answer["model_version"].split(",")) == set(outputs["model_version"]["data"])
    v1 = pd.DataFrame(_predict(shop, ids)["predictions"])
    np.testing.assert_allclose(outputs["score"]["data"], v1["score"], rtol=1e-12)


def _v2(*ids, **changes) -> dict:
    tensor = {"name": "customer_id", "shape": [len(ids)], "datatype": "INT64", "data": list(ids)}
    return {"inputs": [{**tensor, **changes}]}


def _v2_raw(token: str) -> bytes:
    """A V2 body with `token` written raw as the id (NaN, Infinity: not expressible in json)."""
    return json.dumps(_v2(0)).replace("[0]}", f"[{token}]}}").encode()


TEXT = {"content-type": "text/plain"}
# (case, protocol, body, headers, status, reason, message): the README's bad-input list.
BAD_INPUTS = [
    ("unknown customer", "v1", {"instances": [{"customer_id": 10**9}]}, None, 400,
     "unknown_customer", "unknown customer"),
    ("missing field", "v1", {"instances": [{}]}, None, 400, "invalid_input",
     "missing 'customer_id'"),
    ("null id", "v1", {"instances": [{"customer_id": None}]}, None, 400, "invalid_input",
     "got null"),
    ("no instances", "v1", {"rows": []}, None, 400, "invalid_input", "unknown fields ['rows']"),
    ("extra top-level field", "v1", {"instances": [{"customer_id": 1}], "id": "x"}, None, 400,
     "invalid_input", "unknown fields ['id']"),
    ("empty batch", "v1", {"instances": []}, None, 400, "invalid_input", "empty batch"),
    ("string id", "v1", {"instances": [{"customer_id": "abc"}]}, None, 400, "invalid_input",
     "integer customer id"),
    ("float id", "v1", {"instances": [{"customer_id": 1.5}]}, None, 400, "invalid_input",
     "integer customer id"),
    ("boolean id", "v1", {"instances": [{"customer_id": True}]}, None, 400, "invalid_input",
     "integer customer id"),
    ("negative id", "v1", {"instances": [{"customer_id": -1}]}, None, 400, "invalid_input",
     "out of range"),
    ("id 2**63", "v1", {"instances": [{"customer_id": 2**63}]}, None, 400, "invalid_input",
     "out of range"),
    ("id 2**70", "v1", {"instances": [{"customer_id": 2**70}]}, None, 400, "invalid_input",
     "out of range"),
    ("extra field", "v1", {"instances": [{"customer_id": 1, "age": 3}]}, None, 400,
     "invalid_input", "unknown fields"),
    ("bad timestamp", "v1", {"instances": [{"customer_id": 1, "request_ts": "May"}]}, None, 400,
     "invalid_input", "ISO"),
    ("timestamp out of range", "v1", {"instances": [{"customer_id": 1, "request_ts": "0001-01-01"}]},
     None, 400, "invalid_input", "between 1970-01-01"),
    ("timestamp not a string", "v1", {"instances": [{"customer_id": 1, "request_ts": 17}]}, None,
     400, "invalid_input", "ISO 8601 string"),
    ("request before features", "v1",
     {"instances": [{"customer_id": 10, "request_ts": "2025-01-02T00:00:00+00:00"}]}, None, 400,
     "request_before_features", "before its online features"),
    ("NaN", "v1", b'{"instances": [{"customer_id": NaN}]}', None, 400, "invalid_json",
     "NaN is not valid JSON"),
    ("Infinity", "v1", b'{"instances": [{"customer_id": 1, "request_ts": Infinity}]}', None, 400,
     "invalid_json", "Infinity is not valid JSON"),
    ("overflowing number", "v1", b'{"instances": [{"customer_id": 1e400}]}', None, 400,
     "invalid_json", "infinity"),
    ("not JSON", "v1", b"customer_id=1", None, 400, "invalid_json", "not valid JSON"),
    ("empty body", "v1", b"", None, 400, "invalid_json", "empty"),
    ("not UTF-8", "v1", b'{"instances": [{"customer_id": "\xff"}]}', None, 400, "invalid_json",
     "UTF-8"),
    ("JSON not an object", "v1", [1, 2], None, 400, "invalid_input", "must be a JSON object"),
    ("instances not a list", "v1", {"instances": {"customer_id": 1}}, None, 400, "invalid_input",
     "must be a list"),
    ("too many", "v1", {"instances": [{"customer_id": 1}] * 501}, None, 400, "invalid_input",
     "the limit is 500"),
    ("wrong content type", "v1", {"instances": [{"customer_id": 1}]}, TEXT, 415,
     "unsupported_media_type", "text/plain"),
    ("v2 wrong shape", "v2", _v2(1, 2, shape=[3]), None, 400, "invalid_input", "shape"),
    ("v2 2-d shape", "v2", _v2(1, 2, shape=[1, 2]), None, 400, "invalid_input", "shape"),
    ("v2 shape of strings", "v2", _v2(1, shape=["1"]), None, 400, "invalid_input",
     "list of integers"),
    ("v2 wrong datatype", "v2", _v2(1, datatype="FP32"), None, 400, "invalid_input",
     "must be INT64"),
    ("v2 float data", "v2", _v2(1.0), None, 400, "invalid_input", "integer customer id"),
    ("v2 wrong input name", "v2", _v2(1, name="customer"), None, 400, "invalid_input",
     "unknown inputs"),
    ("v2 input given twice", "v2", {"inputs": _v2(10)["inputs"] * 2}, None, 400, "invalid_input",
     "given twice"),
    ("v2 id 2**63", "v2", _v2(2**63), None, 400, "invalid_input", "out of range"),
    ("v2 id 2**70", "v2", _v2(2**70), None, 400, "invalid_input", "out of range"),
    ("v2 INT32 beyond 2**31", "v2", _v2(2**31, datatype="INT32"), None, 400, "invalid_input",
     "out of range"),
    ("v2 NaN", "v2", _v2_raw("NaN"), None, 400, "invalid_json", "NaN is not valid JSON"),
    ("v2 -Infinity", "v2", _v2_raw("-Infinity"), None, 400, "invalid_json",
     "-Infinity is not valid JSON"),
    ("v2 NaN in parameters", "v2",
     b'{"parameters": {"x": NaN}, "inputs": [{"name": "customer_id", "shape": [1], '
     b'"datatype": "INT64", "data": [10]}]}', None, 400, "invalid_json", "NaN"),
    ("v2 not JSON", "v2", b"inputs=1", None, 400, "invalid_json", "not valid JSON"),
    ("v2 missing inputs", "v2", {"id": "x"}, None, 400, "invalid_input",
     "missing field 'inputs'"),
    ("v2 null inputs", "v2", {"inputs": None}, None, 400, "invalid_input",
     "'inputs' must be a list, got null"),
    ("v2 null data", "v2", _v2(1, data=None), None, 400, "invalid_input", "data is null"),
    ("v2 missing datatype", "v2", {"inputs": [{"name": "customer_id", "shape": [1], "data": [1]}]},
     None, 400, "invalid_input", "datatype is missing"),
    ("v2 extra field", "v2", _v2(1, unit="id"), None, 400, "invalid_input", "unknown fields"),
    ("v2 id not a string", "v2", {**_v2(10), "id": 7}, None, 400, "invalid_input",
     "'id' must be a string"),
    ("v2 nested parameters", "v2", {**_v2(10), "parameters": {"a": {"b": 1}}}, None, 400,
     "invalid_input", "string, number or boolean"),
    ("v2 unknown output", "v2", {**_v2(10), "outputs": [{"name": "prob"}]}, None, 400,
     "invalid_input", "unknown output"),
    ("v2 request_ts wrong length", "v2",
     {"inputs": [*_v2(10)["inputs"],
                 {"name": "request_ts", "shape": [2], "datatype": "BYTES",
                  "data": [REQUEST_TS, REQUEST_TS]}]}, None, 400, "invalid_input", "2 values for 1"),
    ("v2 request before features", "v2",
     {"inputs": [*_v2(10)["inputs"],
                 {"name": "request_ts", "shape": [1], "datatype": "BYTES",
                  "data": ["2025-05-01T00:00:00Z"]}]}, None, 400, "request_before_features",
     "customer 10"),
    ("v2 JSON string body", "v2", "inputs", None, 400, "invalid_input",
     "must be a JSON object"),
    ("v2 wrong content type", "v2", _v2(10), {"content-type": "application/xml"}, 415,
     "unsupported_media_type", "application/xml"),
    ("v2 CloudEvent", "v2", _v2(10), {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s",
                                      "ce-type": "t"}, 415, "unsupported_media_type",
     "CloudEvents"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "protocol", "body", "headers", "status", "reason", "message"),
    BAD_INPUTS,
    ids=[c[0] for c in BAD_INPUTS],
)
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(
    shop, case, protocol, body, headers, status, reason, message
):
    path = "/v1/models/churn:predict" if protocol == "v1" else "/v2/models/churn/infer"
    got, answer = _call(shop["url"] + path, body, headers)
    assert got == status, answer
    assert isinstance(answer, dict) and answer["reason"] == reason, answer
    assert message in answer["error"], answer
    assert _call(f"{shop['url']}/v2/health/live")[0] == 200
    assert _predict(shop, _customers(shop, 1))["predictions"]


def test_a_bad_request_leaves_the_keep_alive_connection_usable(shop):
    """Each bad request, then a good one, on the same connection: 4xx, then 200, never a reset."""
    good = json.dumps({"instances": [{"customer_id": _customers(shop, 1)[0]}]})
    bad = [
        ("/v2/models/churn/infer", json.dumps(_v2(2**63)), 400),
        ("/v2/models/churn/infer", json.dumps(_v2(2**70)), 400),
        ("/v1/models/churn:predict", json.dumps({"instances": [{"customer_id": 2**63}]}), 400),
        ("/v2/models/churn/infer", _v2_raw("NaN"), 400),
        ("/v1/models/churn:predict", b"{not json", 400),
        ("/v2/models/churn/infer", json.dumps({"inputs": None}), 400),
        ("/v1/models/churn:predict", b" " * (BASE.serving.max_body_bytes + 1), 413),
        ("/v1/models/fraud:predict", good, 404),
        ("/v1/models/churn:explain", good, 400),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", shop["port"], timeout=30)
    try:
        for path, body, status in bad:
            conn.request("POST", path, body, {"content-type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert response.status == status, (path, answer)
            assert answer["error"] and not response.will_close, (path, answer)
            conn.request(
                "POST", "/v1/models/churn:predict", good, {"content-type": "application/json"}
            )
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert json.loads(response.read())["predictions"]
    finally:
        conn.close()


def test_v2_model_metadata_describes_the_input_and_output_tensors(shop):
    status, metadata = _call(f"{shop['url']}/v2/models/churn")
    assert status == 200
    assert metadata["inputs"] == [
        {"name": "customer_id", "datatype": "INT64", "shape": [-1]},
        {"name": "request_ts", "datatype": "BYTES", "shape": [-1]},
    ]
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "score": "FP64",
        "prediction": "INT32",
        "risk_band": "BYTES",
        "rule": "BYTES",
        "model_version": "BYTES",
        "arm": "BYTES",
    }
    # A V2 client may ask for some of the outputs only.
    status, answer = _call(
        f"{shop['url']}/v2/models/churn/infer",
        {**_v2(_customers(shop, 1)[0]), "outputs": [{"name": "score"}]},
    )
    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["score"]


def test_request_ts_on_or_after_the_feature_timestamp_is_served(shop):
    customer = _customers(shop, 1)[0]
    rows = shop["store"].get_online_features(
        features=["customer_orders:order_count_lifetime"], entity_rows=[{"customer_id": customer}]
    )
    stamp = rows.to_dict(include_event_timestamps=True)["order_count_lifetime__ts"][0]
    as_of = dt.datetime.fromtimestamp(stamp, tz=dt.UTC)
    url = f"{shop['url']}/v1/models/churn:predict"
    exactly = {"instances": [{"customer_id": customer, "request_ts": as_of.isoformat()}]}
    assert _call(url, exactly)[0] == 200
    before = as_of - dt.timedelta(seconds=1)
    status, answer = _call(
        url, {"instances": [{"customer_id": customer, "request_ts": before.isoformat()}]}
    )
    assert status == 400 and answer["reason"] == "request_before_features"
    assert str(customer) in answer["error"] and as_of.isoformat() in answer["error"]


def test_oversized_body_is_413_and_unknown_model_is_404(shop):
    huge = json.dumps({"instances": [{"customer_id": 1}] * 20_000}).encode()
    assert len(huge) > BASE.serving.max_body_bytes
    status, answer = _call(f"{shop['url']}/v1/models/churn:predict", huge)
    assert status == 413 and "over the limit" in answer["error"]
    status, answer = _call(f"{shop['url']}/v1/models/fraud:predict", {"instances": []})
    assert status == 404 and "fraud" in json.dumps(answer)
    status, _ = _call(
        f"{shop['url']}/v2/models/fraud/infer",
        {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [1]}]},
    )
    assert status == 404


def test_prometheus_metrics_count_requests_errors_and_versions(shop):
    _predict(shop, _customers(shop, 3))
    before = error_counts(_call(f"{shop['url']}/metrics")[1], "churn")
    _call(f"{shop['url']}/v1/models/churn:predict", {"instances": []})
    _call(f"{shop['url']}/v1/models/churn:predict", b"{")
    _call(f"{shop['url']}/v2/models/churn/infer", _v2(10**9))
    status, text = _call(f"{shop['url']}/metrics")
    assert status == 200
    after = error_counts(text, "churn")
    for reason in ("invalid_input", "invalid_json", "unknown_customer"):
        assert after[reason] - before.get(reason, 0) == 1, (reason, before, after)
    assert "internal_error" not in after
    assert (
        f'mlops_predictions_total{{arm="champion",model="churn",model_version="{shop["champion"]}"}}'
        in text
    )
    assert 'mlops_prediction_errors_total{model="churn",reason="invalid_input"}' in text
    assert 'mlops_predict_latency_seconds_bucket{le="0.005",model="churn"' in text
    assert 'request_predict_seconds_count{model_name="churn"}' in text  # KServe's own


def test_canary_share_is_within_tolerance_and_sticky_per_customer(shop):
    customers = _customers(shop, 3000)
    assert len(customers) >= 800
    rng = np.random.default_rng(7)
    served: dict[int, set[str]] = {}
    for c in rng.choice(customers, size=3000):  # one request per call, as clients send them
        row = _predict(shop, [int(c)])["predictions"][0]
        served.setdefault(int(c), set()).add(row["model_version"])
    assert all(len(v) == 1 for v in served.values()), "a customer saw both versions"
    share = np.mean([v == {shop["challenger"]} for v in served.values()])
    sigma = np.sqrt(0.3 * 0.7 / len(served))
    assert abs(share - 0.30) < 3 * sigma, (share, len(served))


def test_a_version_that_fails_readiness_leaves_the_old_one_serving(shop):
    settings, config = shop["settings"], shop["config"]
    broken = register_quick_model(settings, shop["dataset"], extra="feature_nobody_serves")
    set_alias(settings, "churn", CHALLENGER, broken, actor="test", reason="broken on purpose")
    with pytest.raises(DeploymentError, match="feature_nobody_serves"):
        deploy(settings, config, actor="test", reason="should fail")
    assert read_spec(settings, "churn").challenger_version == shop["challenger"]
    versions = {r["model_version"] for r in _predict(shop, _customers(shop, 300))["predictions"]}
    assert versions == {shop["champion"], shop["challenger"]}
    set_alias(settings, "churn", CHALLENGER, shop["challenger"], actor="test", reason="restore")


def test_promote_then_rollback_move_aliases_and_traffic_together(shop):
    settings, config = shop["settings"], shop["config"]
    champion, challenger = shop["champion"], shop["challenger"]
    ids = _customers(shop, 200)
    result = promote(settings, config, actor="test", reason="better on canary")
    assert result["champion"] == challenger and result["split"] == {challenger: 100}
    mlflow = client(settings)
    assert alias_version(mlflow, "churn", CHAMPION) == challenger
    assert alias_version(mlflow, "churn", CHALLENGER) is None
    assert {r["model_version"] for r in _predict(shop, ids)["predictions"]} == {challenger}

    result = rollback(settings, config, actor="test", reason="worse on actuals")
    assert result["champion"] == champion and result["rolled_back"] == challenger
    assert alias_version(mlflow, "churn", CHAMPION) == champion
    assert {r["model_version"] for r in _predict(shop, ids)["predictions"]} == {champion}
    with pytest.raises(RolloutError, match="no canary running and no previous champion"):
        rollback(settings, config, actor="test", reason="nothing left")

    # A canary rolled back: the challenger leaves, the champion takes all traffic.
    set_alias(settings, "churn", CHALLENGER, challenger, actor="test", reason="canary again")
    deploy(settings, config, actor="test", reason="canary")
    assert {r["model_version"] for r in _predict(shop, ids)["predictions"]} == {
        champion,
        challenger,
    }
    rollback(settings, config, actor="test", reason="canary lost")
    assert {r["model_version"] for r in _predict(shop, ids)["predictions"]} == {champion}
    events = [(h["event"], h["outcome"]) for h in history(settings, "churn")]
    assert events.count(("rollout", "promoted")) == 1
    assert events.count(("rollout", "rolled_back")) == 2


def test_every_online_prediction_reaches_the_inference_log_on_clean_shutdown(shop):
    settings, config = shop["settings"], shop["config"]
    ids = _customers(shop, 50)
    sent = {}
    for i in range(120):
        request_id = f"log-test-{i}"
        batch = ids[i % 10 : i % 10 + 1 + i % 4]
        # Every fifth request gives no request_ts: its predictions are as of their arrival.
        stamp = {"request_ts": REQUEST_TS} if i % 5 else {}
        body = {"instances": [{"customer_id": c, **stamp} for c in batch]}
        status, answer = _call(
            f"{shop['url']}/v1/models/churn:predict", body, {"x-request-id": request_id}
        )
        assert status == 200
        sent[request_id] = answer["predictions"]
    assert stop_server(settings, "churn")  # SIGTERM: drain, flush, exit
    log = catalog(settings).load_table("predictions.churn_online").scan().to_pandas()
    ours = log[log["request_id"].str.startswith("log-test-")]
    assert len(ours) == sum(len(p) for p in sent.values())
    assert not ours.duplicated(["request_id", "customer_id"]).any()
    for request_id, predictions in list(sent.items())[:20]:
        rows = ours[ours["request_id"] == request_id].sort_values("customer_id")
        expected = pd.DataFrame(predictions).sort_values("customer_id")
        np.testing.assert_allclose(rows["score"], expected["score"], rtol=1e-12)
        assert rows["model_version"].tolist() == expected["model_version"].tolist()
        assert (rows["latency_ms"] > 0).all()
        features = json.loads(rows["features"].iloc[0])
        assert "lifetime_value_usd" in features and "days_since_last_order_now" in features
    # prediction_timestamp: the request_ts the client gave, else the arrival (requested_at).
    index = ours["request_id"].str.removeprefix("log-test-").astype(int)
    given, arrival = ours[index % 5 != 0], ours[index % 5 == 0]
    assert len(given) and len(arrival)
    assert (given["prediction_timestamp"] == pd.Timestamp(REQUEST_TS)).all()
    assert (given["requested_at"] > pd.Timestamp(REQUEST_TS)).all()  # the wall clock
    assert (arrival["prediction_timestamp"] == arrival["requested_at"]).all()
    deploy(settings, config, actor="test", reason="restart after the log test")


def test_compiled_scorer_equals_sklearn_including_missing_and_unknown_values(shop):
    from mlops_assets.serving.batch import offline_features
    from mlops_assets.serving.compiled import CompiledChurnModel

    model = load_model(shop["settings"], "churn", shop["champion"])
    compiled = CompiledChurnModel.compile(model)
    assert compiled is not None
    frame = offline_features(shop["store"], "churn_v1", dt.datetime.fromisoformat(REQUEST_TS))
    rows = frame[compiled.columns].to_dict(orient="records")
    rows[0]["plan"] = "platinum"  # a category never seen in training
    rows[1]["country_code"] = None
    rows[2]["tenure_days"] = None
    rows[3]["days_since_last_order"] = float("nan")
    expected = model.predict_proba(pd.DataFrame(rows, columns=compiled.columns))[:, 1]
    np.testing.assert_allclose(compiled.predict_proba(compiled.encode(rows)), expected, rtol=1e-12)
    baseline = load_model(shop["settings"], "churn", shop["challenger"])
    assert CompiledChurnModel.compile(baseline) is None  # logistic baseline: sklearn scores it


def test_dagster_deployment_asset_and_rollout_jobs(shop):
    """The same operations as Dagster runs: the asset deploys a canary, the jobs move traffic."""
    import dagster as dg

    from mlops_assets.definitions import defs

    settings = shop["settings"]
    set_alias(settings, "churn", CHALLENGER, shop["challenger"], actor="test", reason="canary")
    asset = defs.resolve_assets_def(dg.AssetKey(["deployments", "churn", "endpoint"]))
    result = dg.materialize([asset])
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    assert materialization.metadata["challenger_version"].value == shop["challenger"]
    [check] = result.get_asset_check_evaluations()
    assert check.passed
    ids = _customers(shop, 300)
    assert {r["model_version"] for r in _predict(shop, ids)["predictions"]} == {
        shop["champion"],
        shop["challenger"],
    }

    run = defs.resolve_job_def("rollback_churn").execute_in_process(
        run_config={"ops": {"rollback_churn_op": {"config": {"reason": "canary lost"}}}}
    )
    assert run.success
    assert {r["model_version"] for r in _predict(shop, ids)["predictions"]} == {shop["champion"]}
    [event] = run.asset_materializations_for_node("rollback_churn_op")
    assert event.metadata["traffic_split"].value == f"v{shop['champion']}: 100%"

    # Nothing to promote now: the run fails with the reason, and the serving split is unchanged.
    run = defs.resolve_job_def("promote_churn").execute_in_process(raise_on_error=False)
    assert not run.success
    failure = run.failure_data_for_node("promote_churn_op")
    assert "no challenger to promote" in str(failure.error)
    assert read_spec(settings, "churn").split() == {shop["champion"]: 100}
