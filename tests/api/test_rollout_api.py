"""Rollouts through the API against a served shop (a real model server process, MLflow, Feast,
pyiceberg): change the canary's share, promote (the new version serves 100 % within 30 s of the
call), roll back, stop; versions with lineage; each call in the audit log."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from mlops_assets.api.app import create_app
from mlops_assets.resources import LocalDeployer
from tests.api.conftest import ACCESS, api_settings, auth
from tests.serving.serving_world import customers, predict, served_shop

pytestmark = pytest.mark.slow
PROMOTE_TARGET_S = 30.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_rollout")
    with served_shop(root, canary_percent=20) as shop:
        access = root / "access.yaml"
        access.write_text(ACCESS)
        res = shop["resources"]
        # The shop's server listens on a free port: the deployer is told so.
        resources = SimpleNamespace(
            model_registry=res.model_registry,
            lakehouse=res.lakehouse,
            feature_store=res.feature_store,
            deployer=LocalDeployer(data_dir=str(shop["settings"].data_dir), port=shop["port"]),
        )
        app = create_app(api_settings(access), resources)
        yield shop, TestClient(app, raise_server_exceptions=False)


def _versions_served(shop, ids) -> set[str]:
    return {row["model_version"] for row in predict(shop, ids)["predictions"]}


def test_versions_carry_their_lineage(served):
    shop, client = served
    versions = client.get("/v1/models/churn/versions", headers=auth(role="viewer")).json()
    by_version = {v["version"]: v for v in versions}
    assert by_version[shop["champion"]]["aliases"] == ["champion"]
    assert by_version[shop["challenger"]]["aliases"] == ["challenger"]
    lineage = by_version[shop["champion"]]["lineage"]
    assert lineage["feature_service"] == "churn_v1" and lineage["dvc_md5"] == "x.dir"
    features = client.get("/v1/models/churn/features", headers=auth(role="data-scientist"))
    assert features.status_code == 200, features.text
    assert len(features.json()["features"]) > 10


def test_canary_share_then_promote_serves_the_new_version_within_30s(served):
    shop, client = served
    ids = customers(shop, 200)
    canary = client.put(
        "/v1/deployments/churn/canary", json={"percent": 50, "reason": "widen"}, headers=auth()
    )
    assert canary.status_code == 200, canary.text
    split = client.get("/v1/deployments/churn", headers=auth(role="viewer")).json()["split"]
    assert split == {shop["champion"]: 50, shop["challenger"]: 50}
    assert _versions_served(shop, ids) == {shop["champion"], shop["challenger"]}

    started = time.perf_counter()
    promoted = client.post("/v1/models/churn/promote", json={"reason": "api"}, headers=auth())
    assert promoted.status_code == 200, promoted.text
    while _versions_served(shop, ids) != {shop["challenger"]}:
        assert time.perf_counter() - started < PROMOTE_TARGET_S
        time.sleep(0.1)
    took = time.perf_counter() - started
    print(f"promote through the API -> v{shop['challenger']} serving 100 %: {took:.2f} s")
    assert took <= PROMOTE_TARGET_S
    assert promoted.json()["champion"] == shop["challenger"]

    archive = client.post(
        f"/v1/models/churn/versions/{shop['challenger']}/archive",
        json={"reason": "serving"},
        headers=auth(),
    )
    assert archive.status_code == 409 and "champion" in archive.json()["error"]


def test_rollback_then_stop(served):
    shop, client = served
    ids = customers(shop, 50)
    rolled = client.post("/v1/models/churn/rollback", json={"reason": "back"}, headers=auth())
    assert rolled.status_code == 200, rolled.text
    assert _versions_served(shop, ids) == {shop["champion"]}
    stopped = client.delete("/v1/deployments/churn", headers=auth())
    assert stopped.json() == {"model": "churn", "stopped": True}
    actions = [r["action"] for r in client.get("/v1/audit?limit=20", headers=auth()).json()]
    assert actions[:3] == [
        "DELETE /v1/deployments/{model}",
        "POST /v1/models/{model}/rollback",
        "POST /v1/models/{model}/versions/{version}/archive",
    ]
