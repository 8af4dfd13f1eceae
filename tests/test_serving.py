"""The online predictor on a real local KServe model server (separate process, 127.0.0.1), with a
real Feast online store, real MLflow versions and the real Iceberg inference log."""

import datetime as dt
import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from mlops_assets.features.dataset import build_training_set, load_labels
from mlops_assets.features.store import materialize_window
from mlops_assets.models.config import model_configs
from mlops_assets.models.promotion import history, set_alias
from mlops_assets.models.registry import CHALLENGER, CHAMPION, alias_version, client, load_model
from mlops_assets.serving.deployment import (
    DeploymentError,
    challenger_share,
    read_spec,
    stop_server,
)
from mlops_assets.serving.iceberg import catalog
from mlops_assets.serving.rollout import RolloutError, deploy, promote, rollback
from tests.conftest import build_shop, free_port, register_quick_model, scratch_world

pytestmark = pytest.mark.slow
BASE = model_configs()["churn"]
DAYS = 150
REQUEST_TS = "2025-05-30T12:00:00+00:00"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    with scratch_world(root) as settings:
        store = build_shop(settings, days=DAYS)
        start = dt.datetime.combine(settings.start_date, dt.time(), tzinfo=dt.UTC)
        materialize_window(store, start, start + dt.timedelta(days=DAYS))
        dataset = root / "dataset"
        build_training_set(store, "churn_v1", load_labels(settings), dataset)
        champion = register_quick_model(settings, dataset)
        challenger = register_quick_model(settings, dataset, kind="baseline")
        set_alias(settings, "churn", CHAMPION, champion, actor="test", reason="fixture")
        set_alias(settings, "churn", CHALLENGER, challenger, actor="test", reason="fixture")
        serving = BASE.serving.model_copy(update={"port": free_port(), "canary_percent": 30})
        config = BASE.model_copy(update={"serving": serving})
        deploy(settings, config, actor="test", reason="fixture")
        try:
            yield {
                "settings": settings,
                "store": store,
                "config": config,
                "dataset": dataset,
                "champion": champion,
                "challenger": challenger,
                "url": f"http://127.0.0.1:{serving.port}",
            }
        finally:
            stop_server(settings, "churn")


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
    """Customers with online features (every customer with a gold snapshot), in id order."""
    import duckdb

    path = shop["settings"].gold_dir / "customer_features.parquet"
    with duckdb.connect() as con:
        ids = con.execute(
            "select distinct customer_id from read_parquet(?) order by 1 limit ?", [str(path), n]
        ).fetchall()
    return [int(i) for (i,) in ids]


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


BAD_INPUTS = [
    ("unknown customer", "v1", {"instances": [{"customer_id": 10**9}]}, 400, "unknown customer"),
    ("missing field", "v1", {"instances": [{}]}, 400, "missing 'customer_id'"),
    ("no instances", "v1", {"rows": []}, 400, "missing field 'instances'"),
    ("empty batch", "v1", {"instances": []}, 400, "empty batch"),
    ("string id", "v1", {"instances": [{"customer_id": "abc"}]}, 400, "integer customer id"),
    ("float id", "v1", {"instances": [{"customer_id": 1.5}]}, 400, "integer customer id"),
    ("extra field", "v1", {"instances": [{"customer_id": 1, "age": 3}]}, 400, "unknown fields"),
    ("bad timestamp", "v1", {"instances": [{"customer_id": 1, "request_ts": "May"}]}, 400, "ISO"),
    ("NaN", "v1", b'{"instances": [{"customer_id": NaN}]}', 400, "Unrecognized request format"),
    ("not JSON", "v1", b"customer_id=1", 400, "Unrecognized request format"),
    ("instances not a list", "v1", {"instances": {"customer_id": 1}}, 400, "must be a list"),
    ("too many", "v1", {"instances": [{"customer_id": 1}] * 501}, 400, "the limit is 500"),
    (
        "wrong shape",
        "v2",
        {"inputs": [{"name": "customer_id", "shape": [3], "datatype": "INT64", "data": [1, 2]}]},
        400,
        "shape",
    ),
    (
        "wrong datatype",
        "v2",
        {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        400,
        "must be INT64",
    ),
    (
        "wrong input name",
        "v2",
        {"inputs": [{"name": "customer", "shape": [1], "datatype": "INT64", "data": [1]}]},
        400,
        "unknown inputs",
    ),
    ("v2 missing inputs", "v2", {"id": "x"}, 422, ""),
]


@pytest.mark.parametrize(
    ("case", "protocol", "body", "status", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(
    shop, case, protocol, body, status, message
):
    path = "/v1/models/churn:predict" if protocol == "v1" else "/v2/models/churn/infer"
    got, answer = _call(shop["url"] + path, body)
    assert got == status, answer
    text = json.dumps(answer)
    assert message in text, text
    assert _call(f"{shop['url']}/v2/health/live")[0] == 200
    assert _predict(shop, _customers(shop, 1))["predictions"]


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
    _call(f"{shop['url']}/v1/models/churn:predict", {"instances": []})
    status, text = _call(f"{shop['url']}/metrics")
    assert status == 200
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
        body = {"instances": [{"customer_id": c, "request_ts": REQUEST_TS} for c in batch]}
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
