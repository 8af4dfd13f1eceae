"""Runs through Dagster's GraphQL API, against a real `dagster-webserver` serving the project's
code location (its instance queues runs; no daemon starts them): a retraining and a backfill are
launched with the caller's tenant and model as tags and read back; another tenant cannot read
them; an unreachable webserver is a 503 that names it."""

from __future__ import annotations

import pytest

from tests.api.conftest import auth

pytestmark = pytest.mark.slow
REASON = "runs test"


@pytest.fixture(scope="module")
def runs_client(make_client, dagster_webserver):
    return make_client(dagster_url=dagster_webserver)


def test_launch_a_retraining_and_read_it_back(runs_client):
    launched = runs_client.post(
        "/v1/runs/retrain",
        json={"model": "churn", "reason": REASON, "labels_known_by": "2025-01-20"},
        headers=auth(role="data-scientist", sub="dana"),
    )
    assert launched.status_code == 202, launched.text
    run_id = launched.json()["run_id"]
    run = runs_client.get(f"/v1/runs/{run_id}", headers=auth(role="viewer")).json()
    assert run["kind"] == "run" and run["jobName"] == "retrain_churn"
    assert run["status"] == "QUEUED"
    assert run["tags"]["mlops/tenant"] == "retail" and run["tags"]["mlops/actor"] == "dana"
    assert run["tags"]["mlops/trigger"] == "api"
    hidden = runs_client.get(f"/v1/runs/{run_id}", headers=auth(tenant="wholesale"))
    assert hidden.status_code == 404 and hidden.json()["error"] == f"run {run_id!r} not found"


def test_launch_a_backfill_and_read_it_back(runs_client):
    body = {
        "model": "churn",
        "stage": "monitoring",
        "start": "2025-01-10",
        "end": "2025-01-12",
        "reason": REASON,
    }
    launched = runs_client.post("/v1/runs/backfill", json=body, headers=auth())
    assert launched.status_code == 202, launched.text
    assert launched.json()["days"] == 3
    backfill = runs_client.get(f"/v1/runs/{launched.json()['run_id']}", headers=auth()).json()
    assert backfill["kind"] == "backfill" and backfill["status"] == "REQUESTED"
    assert backfill["tags"]["mlops/model"] == "churn"


def test_unknown_run_is_404(runs_client):
    answer = runs_client.get("/v1/runs/0000-not-a-run", headers=auth())
    assert answer.status_code == 404 and answer.json()["reason"] == "not_found"


def test_unreachable_webserver_is_a_clear_503(client):
    """The default test settings point at a free port where nothing listens."""
    for method, path, body in (
        ("post", "/v1/runs/retrain", {"model": "churn", "reason": REASON}),
        ("get", "/v1/runs/abc", None),
    ):
        kwargs = {"json": body} if body else {}
        answer = client.request(method, path, headers=auth(), **kwargs)
        assert answer.status_code == 503, answer.text
        assert answer.json()["reason"] == "orchestrator_unreachable"
        assert "is unreachable" in answer.json()["error"]
