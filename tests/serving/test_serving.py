"""The online predictor on a real local KServe model server (separate process, 127.0.0.1), with a
real Feast online store, real MLflow versions and the real Iceberg inference log."""

import datetime as dt
import http.client
import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.serving.deployment import (
    DeploymentError,
    active_spec,
    challenger_share,
    spec_to_serve,
)
from mlops_assets.serving.rollout import RolloutError, deploy, promote, rollback
from mlops_assets.testing import register_quick_model
from mlops_assets.training.decisions import history, set_alias
from mlops_assets.training.registry import CHALLENGER, CHAMPION, alias_version, client, load_model
from tests.serving.bad_inputs import BAD_INPUTS, v2_body, v2_raw
from tests.serving.serving_world import BASE, REQUEST_TS, V1, V2, call, error_counts, predict
from tests.serving.serving_world import customers as _customers

pytestmark = pytest.mark.slow


def test_health_readiness_and_model_listing(shop):
    assert call(f"{shop['url']}/v2/health/live")[0] == 200
    assert call(f"{shop['url']}/v2/health/ready")[0] == 200
    assert call(f"{shop['url']}/v1/models/{BASE.name}") == (200, {"name": BASE.name, "ready": True})
    assert call(f"{shop['url']}/v2/models/{BASE.name}/ready")[0] == 200
    assert call(f"{shop['url']}/v1/models")[1] == {"models": [BASE.name]}


def test_v1_scores_equal_the_mlflow_model_on_feast_features(shop):
    ids = _customers(shop, 40)
    answer = predict(shop, ids)
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
    for version, group in rows.groupby("model_version"):
        model = load_model(shop["registry"], BASE.registered_model, version)
        frame = features.set_index("customer_id").loc[group["customer_id"]]
        expected = model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]
        np.testing.assert_allclose(group["score"].to_numpy(), expected, rtol=1e-9)
    salt = f"{BASE.name}:{shop['challenger']}"  # the predictor's canary salt
    expected_arm = ["challenger" if challenger_share(c, salt) < 30 else "champion" for c in ids]
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
    status, answer = call(f"{shop['url']}{V2}", body)
    assert status == 200, answer
    assert answer["id"] == "req-v2" and answer["model_name"] == BASE.name
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["score"]["datatype"] == "FP64" and outputs["score"]["shape"] == [5]
    assert all(0.0 <= s <= 1.0 for s in outputs["score"]["data"])
    assert set(outputs["model_version"]["data"]) <= {shop["champion"], shop["challenger"]}
    assert set(answer["model_version"].split(",")) == set(outputs["model_version"]["data"])
    v1 = pd.DataFrame(predict(shop, ids)["predictions"])
    np.testing.assert_allclose(outputs["score"]["data"], v1["score"], rtol=1e-12)


@pytest.mark.parametrize(
    ("case", "protocol", "body", "headers", "status", "reason", "message"),
    BAD_INPUTS,
    ids=[c[0] for c in BAD_INPUTS],
)
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(
    shop, case, protocol, body, headers, status, reason, message
):
    path = V1 if protocol == "v1" else V2
    got, answer = call(shop["url"] + path, body, headers)
    assert got == status, answer
    assert isinstance(answer, dict) and answer["reason"] == reason, answer
    assert message in answer["error"], answer
    assert call(f"{shop['url']}/v2/health/live")[0] == 200
    assert predict(shop, _customers(shop, 1))["predictions"]


def test_a_bad_request_leaves_the_keep_alive_connection_usable(shop):
    """Each bad request, then a good one, on the same connection: 4xx, then 200, never a reset."""
    good = json.dumps({"instances": [{"customer_id": _customers(shop, 1)[0]}]})
    bad = [
        (V2, json.dumps(v2_body(2**63)), 400),
        (V2, json.dumps(v2_body(2**70)), 400),
        (V1, json.dumps({"instances": [{"customer_id": 2**63}]}), 400),
        (V2, v2_raw("NaN"), 400),
        (V1, b"{not json", 400),
        (V2, json.dumps({"inputs": None}), 400),
        (V1, b" " * (BASE.serving.max_body_bytes + 1), 413),
        ("/v1/models/fraud:predict", good, 404),
        (f"/v1/models/{BASE.name}:explain", json.dumps({"instances": []}), 400),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", shop["port"], timeout=30)
    try:
        for path, body, status in bad:
            conn.request("POST", path, body, {"content-type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert response.status == status, (path, answer)
            assert answer["error"] and not response.will_close, (path, answer)
            conn.request("POST", V1, good, {"content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert json.loads(response.read())["predictions"]
    finally:
        conn.close()


def test_v2_model_metadata_describes_the_input_and_output_tensors(shop):
    status, metadata = call(f"{shop['url']}/v2/models/{BASE.name}")
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
    status, answer = call(
        f"{shop['url']}{V2}",
        {**v2_body(_customers(shop, 1)[0]), "outputs": [{"name": "score"}]},
    )
    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["score"]


def test_request_ts_on_or_after_the_feature_timestamp_is_served(shop):
    customer = _customers(shop, 1)[0]
    rows = shop["store"].get_online_features(
        features=["customer_orders:order_count_lifetime"], entity_rows=[{"customer_id": customer}]
    )
    stamp = rows.to_dict(include_event_timestamps=True)["order_count_lifetime__ts"][0]
    as_of = dt.datetime.fromtimestamp(stamp, tz=dt.UTC)
    url = f"{shop['url']}{V1}"
    exactly = {"instances": [{"customer_id": customer, "request_ts": as_of.isoformat()}]}
    assert call(url, exactly)[0] == 200
    before = as_of - dt.timedelta(seconds=1)
    status, answer = call(
        url, {"instances": [{"customer_id": customer, "request_ts": before.isoformat()}]}
    )
    assert status == 400 and answer["reason"] == "request_before_features"
    assert str(customer) in answer["error"] and as_of.isoformat() in answer["error"]


def test_oversized_body_is_413_and_unknown_model_is_404(shop):
    huge = json.dumps({"instances": [{"customer_id": 1}] * 20_000}).encode()
    assert len(huge) > BASE.serving.max_body_bytes
    status, answer = call(f"{shop['url']}{V1}", huge)
    assert status == 413 and "over the limit" in answer["error"]
    status, answer = call(f"{shop['url']}/v1/models/fraud:predict", {"instances": []})
    assert status == 404 and "fraud" in json.dumps(answer)
    status, _ = call(
        f"{shop['url']}/v2/models/fraud/infer",
        {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [1]}]},
    )
    assert status == 404


def test_prometheus_metrics_count_requests_errors_and_versions(shop):
    predict(shop, _customers(shop, 3))
    before = error_counts(call(f"{shop['url']}/metrics")[1], BASE.name)
    call(f"{shop['url']}{V1}", {"instances": []})
    call(f"{shop['url']}{V1}", b"{")
    call(f"{shop['url']}{V2}", v2_body(10**9))
    status, text = call(f"{shop['url']}/metrics")
    assert status == 200
    after = error_counts(text, BASE.name)
    for reason in ("invalid_input", "invalid_json", "unknown_customer"):
        assert after[reason] - before.get(reason, 0) == 1, (reason, before, after)
    assert "internal_error" not in after
    assert (
        f'mlops_predictions_total{{arm="champion",model="{BASE.name}",model_version="{shop["champion"]}"}}'
        in text
    )
    assert f'mlops_prediction_errors_total{{model="{BASE.name}",reason="invalid_input"}}' in text
    assert f'mlops_predict_latency_seconds_bucket{{le="0.005",model="{BASE.name}"' in text
    assert f'request_predict_seconds_count{{model_name="{BASE.name}"}}' in text  # KServe's own


def test_canary_share_is_within_tolerance_and_sticky_per_customer(shop):
    customers = _customers(shop, 3000)
    assert len(customers) >= 800
    rng = np.random.default_rng(7)
    served: dict[int, set[str]] = {}
    for c in rng.choice(customers, size=3000):  # one request per call, as clients send them
        row = predict(shop, [int(c)])["predictions"][0]
        served.setdefault(int(c), set()).add(row["model_version"])
    assert all(len(v) == 1 for v in served.values()), "a customer saw both versions"
    share = np.mean([v == {shop["challenger"]} for v in served.values()])
    sigma = np.sqrt(0.3 * 0.7 / len(served))
    assert abs(share - 0.30) < 3 * sigma, (share, len(served))


def test_a_version_that_fails_readiness_leaves_the_old_one_serving(shop):
    registry, deployer, config = shop["registry"], shop["deployer"], shop["config"]
    broken = register_quick_model(registry, BASE, shop["dataset"], extra="feature_nobody_serves")
    set_alias(
        registry,
        BASE.registered_model,
        CHALLENGER,
        broken,
        actor="test",
        reason="broken on purpose",
    )
    with pytest.raises(DeploymentError, match="feature_nobody_serves"):
        deploy(registry, deployer, config, actor="test", reason="should fail")
    # The deployments table still records the old deployment, and no pending one is left.
    assert active_spec(registry, BASE.name).challenger_version == shop["challenger"]
    assert spec_to_serve(registry, BASE.name) == active_spec(registry, BASE.name)
    versions = {r["model_version"] for r in predict(shop, _customers(shop, 300))["predictions"]}
    assert versions == {shop["champion"], shop["challenger"]}
    set_alias(
        registry,
        BASE.registered_model,
        CHALLENGER,
        shop["challenger"],
        actor="test",
        reason="restore",
    )


def test_promote_then_rollback_move_aliases_and_traffic_together(shop):
    registry, deployer, config = shop["registry"], shop["deployer"], shop["config"]
    champion, challenger = shop["champion"], shop["challenger"]
    ids = _customers(shop, 200)
    result = promote(registry, deployer, config, actor="test", reason="better on canary")
    assert result["champion"] == challenger and result["split"] == {challenger: 100}
    mlflow = client(registry)
    assert alias_version(mlflow, BASE.registered_model, CHAMPION) == challenger
    assert alias_version(mlflow, BASE.registered_model, CHALLENGER) is None
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {challenger}

    result = rollback(registry, deployer, config, actor="test", reason="worse on actuals")
    assert result["champion"] == champion and result["rolled_back"] == challenger
    assert alias_version(mlflow, BASE.registered_model, CHAMPION) == champion
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {champion}
    with pytest.raises(RolloutError, match="no canary running and no previous champion"):
        rollback(registry, deployer, config, actor="test", reason="nothing left")

    # A canary rolled back: the challenger leaves, the champion takes all traffic.
    set_alias(
        registry, BASE.registered_model, CHALLENGER, challenger, actor="test", reason="canary again"
    )
    deploy(registry, deployer, config, actor="test", reason="canary")
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {
        champion,
        challenger,
    }
    rollback(registry, deployer, config, actor="test", reason="canary lost")
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {champion}
    events = [(h["event"], h["outcome"]) for h in history(registry, BASE.registered_model)]
    assert events.count(("rollout", "promoted")) == 1
    assert events.count(("rollout", "rolled_back")) == 2


def test_compiled_scorer_equals_sklearn_including_missing_and_unknown_values(shop):
    from mlops_assets.features.offline import offline_features
    from mlops_assets.serving.compiled import KERNEL_MAX_ROWS, CompiledModel

    model = load_model(shop["registry"], BASE.registered_model, shop["champion"])
    compiled = CompiledModel.compile(model)
    assert compiled is not None
    frame = offline_features(shop["store"], "churn_v1", dt.datetime.fromisoformat(REQUEST_TS))
    rows = frame[compiled.columns].to_dict(orient="records")
    rows[0]["plan"] = "platinum"  # a category never seen in training
    rows[1]["country_code"] = None
    rows[2]["tenure_days"] = None
    rows[3]["days_since_last_order"] = float("nan")
    expected = model.predict_proba(pd.DataFrame(rows, columns=compiled.columns))[:, 1]
    X = compiled.encode(rows)
    assert len(rows) > KERNEL_MAX_ROWS  # both walks: numba's row by row, numpy's for a batch
    np.testing.assert_allclose(compiled.predict_proba_numpy(X), expected, rtol=1e-12)
    by_request = np.concatenate([compiled.predict_proba(X[i : i + 3]) for i in range(0, len(X), 3)])
    np.testing.assert_allclose(by_request, expected, rtol=1e-12)
    baseline = load_model(shop["registry"], BASE.registered_model, shop["challenger"])
    assert CompiledModel.compile(baseline) is None  # logistic baseline: sklearn scores it


def test_dagster_deployment_asset_and_rollout_jobs(shop):
    """The same operations as Dagster runs: the asset deploys a canary, the jobs move traffic."""
    import dagster as dg

    from mlops_assets.definitions import load

    defs, registry = load(), shop["registry"]
    set_alias(
        registry,
        BASE.registered_model,
        CHALLENGER,
        shop["challenger"],
        actor="test",
        reason="canary",
    )
    asset = defs.resolve_assets_def(dg.AssetKey(["deployments", BASE.name, "endpoint"]))
    result = dg.materialize([asset])
    [materialization] = result.asset_materializations_for_node(asset.op.name)
    assert materialization.metadata["challenger_version"].value == shop["challenger"]
    [check] = result.get_asset_check_evaluations()
    assert check.passed
    ids = _customers(shop, 300)
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {
        shop["champion"],
        shop["challenger"],
    }

    run = defs.resolve_job_def("rollback_churn").execute_in_process(
        run_config={"ops": {"rollback_churn_op": {"config": {"reason": "canary lost"}}}}
    )
    assert run.success
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {shop["champion"]}
    [event] = run.asset_materializations_for_node("rollback_churn_op")
    assert event.metadata["traffic_split"].value == f"v{shop['champion']}: 100%"

    # Nothing to promote now: the run fails with the reason, and the serving split is unchanged.
    run = defs.resolve_job_def("promote_churn").execute_in_process(raise_on_error=False)
    assert not run.success
    failure = run.failure_data_for_node("promote_churn_op")
    assert "no challenger to promote" in str(failure.error)
    assert active_spec(registry, BASE.name).split() == {shop["champion"]: 100}
