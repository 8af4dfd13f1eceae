"""Several models in one model server process: a second config (a copy of churn's under another
name and registered model, in a model_configs folder given by MLOPS_MODEL_CONFIGS) served beside
churn, each with its own routes, readiness, spec, reloads and metrics."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from mlops_assets.model_config import CONFIG_DIR, CONFIG_DIR_ENV, model_configs
from mlops_assets.serving.rollout import deploy, set_canary
from mlops_assets.testing import register_quick_model
from mlops_assets.training.decisions import set_alias
from mlops_assets.training.registry import CHAMPION
from tests.serving.serving_world import BASE, REQUEST_TS, call, error_counts, predict
from tests.serving.serving_world import customers as _customers

pytestmark = pytest.mark.slow

TWIN = "churn_twin"


def _twin_predict(shop, ids: list[int], headers: dict | None = None) -> pd.DataFrame:
    body = {"instances": [{"customer_id": c, "request_ts": REQUEST_TS} for c in ids]}
    status, answer = call(f"{shop['url']}/v1/models/{TWIN}:predict", body, headers)
    assert status == 200, answer
    assert answer["model_name"] == TWIN
    return pd.DataFrame(answer["predictions"])


@pytest.fixture
def two_models(shop, tmp_path, monkeypatch):
    """churn and churn_twin configured; the shop's server restarted on them. Afterwards the
    shop is as it was: churn alone, champion and challenger deployed."""
    registry, deployer = shop["registry"], shop["deployer"]
    folder = tmp_path / "model_configs"
    folder.mkdir()
    (folder / "churn.yaml").write_text((CONFIG_DIR / "churn.yaml").read_text())
    values = yaml.safe_load((CONFIG_DIR / "churn.yaml").read_text())
    values.update(name=TWIN, registered_model=TWIN)
    values["serving"]["canary_percent"] = 0
    (folder / f"{TWIN}.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    assert deployer.stop(BASE.name)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    model_configs.cache_clear()
    twin = model_configs()[TWIN].model_copy(update={"serving": shop["config"].serving})
    version = register_quick_model(registry, twin, shop["dataset"])
    set_alias(registry, TWIN, CHAMPION, version, actor="test", reason="second model")
    try:
        yield twin, version
    finally:
        deployer.stop()
        monkeypatch.delenv(CONFIG_DIR_ENV)
        model_configs.cache_clear()
        deploy(registry, deployer, shop["config"], actor="test", reason="back to churn alone")


def test_two_models_serve_side_by_side_and_reload_independently(shop, two_models):
    registry, deployer, config = shop["registry"], shop["deployer"], shop["config"]
    twin, twin_version = two_models
    url = shop["url"]
    # The first deployment starts the shared server; the twin has no spec yet: not served.
    deploy(registry, deployer, config, actor="test", reason="churn first")
    pid = deployer.state(BASE.name)["pid"]
    assert deployer.state(TWIN)["model_loaded"] is False
    status, answer = call(f"{url}/v2/models/{TWIN}/ready")
    assert status == 404 and answer["reason"] == "model_not_loaded", answer
    status, answer = call(f"{url}/v1/models/{TWIN}:predict", {"instances": [{"customer_id": 1}]})
    assert status == 404 and "mlops deploy churn_twin" in answer["error"], answer
    ids = _customers(shop, 200)
    assert predict(shop, ids)["predictions"]

    # Deploying the twin loads it into the same process.
    deploy(registry, deployer, twin, actor="test", reason="twin")
    assert deployer.state(TWIN)["pid"] == pid
    assert call(f"{url}/v2/models/{TWIN}/ready")[0] == 200
    assert sorted(call(f"{url}/v1/models")[1]["models"]) == sorted([BASE.name, TWIN])
    before = _twin_predict(shop, ids)
    assert set(before["model_version"]) == {twin_version}
    churn_versions = {r["model_version"] for r in predict(shop, ids)["predictions"]}
    assert churn_versions == {shop["champion"], shop["challenger"]}

    # Reloading churn (its canary to 0%) changes churn's split, not the twin's answers.
    set_canary(registry, deployer, config, 0, actor="test", reason="canary off")
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {shop["champion"]}
    after = _twin_predict(shop, ids)
    pd.testing.assert_frame_equal(before, after)

    # V2 on the twin, and a request missing its key: 400 naming the key.
    body = {"inputs": [{"name": "customer_id", "shape": [2], "datatype": "INT64", "data": ids[:2]}]}
    status, answer = call(f"{url}/v2/models/{TWIN}/infer", body)
    assert status == 200 and answer["model_name"] == TWIN, answer
    status, answer = call(
        f"{url}/v1/models/{TWIN}:predict", {"instances": [{"request_ts": REQUEST_TS}]}
    )
    assert status == 400 and "missing 'customer_id'" in answer["error"], answer
    status, answer = call(f"{url}/v2/models/{TWIN}/infer", {"inputs": []})
    assert status == 400 and "missing input 'customer_id'" in answer["error"], answer

    # One /metrics, by model.
    text = call(f"{url}/metrics")[1]
    assert (
        f'mlops_predictions_total{{arm="champion",model="{TWIN}",model_version="{twin_version}"}}'
        in text
    )
    assert error_counts(text, TWIN).get("invalid_input", 0) >= 2
    assert error_counts(text, TWIN).get("model_not_loaded", 0) >= 2

    # Stopping the twin unloads it; churn keeps serving in the same process.
    assert deployer.stop(TWIN)
    assert call(f"{url}/v2/models/{TWIN}/ready")[0] == 404
    assert deployer.state(BASE.name)["pid"] == pid
    assert {r["model_version"] for r in predict(shop, ids)["predictions"]} == {shop["champion"]}


def test_the_inference_log_records_the_model_and_its_keys(shop, two_models):
    registry, deployer = shop["registry"], shop["deployer"]
    twin, _ = two_models
    deploy(registry, deployer, twin, actor="test", reason="twin alone")
    ids = _customers(shop, 3)
    _twin_predict(shop, ids, {"x-request-id": "twin-log-test"})
    assert deployer.stop()  # the server stops and flushes its logs
    from mlops_assets.lakehouse.tables import INFERENCE_LOG

    catalog = shop["resources"].lakehouse.catalog()
    log = catalog.load_table(INFERENCE_LOG.name(TWIN)).scan().to_pandas()
    log = log[log["request_id"] == "twin-log-test"]
    assert set(log["model_name"]) == {TWIN}
    assert sorted(log["customer_id"]) == sorted(ids)
    assert sorted(log["entity_keys"]) == sorted(f'{{"customer_id": {c}}}' for c in ids)
