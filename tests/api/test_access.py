"""Roles, tenants and bad input as an attacker would try them: a viewer promoting, a data scientist
deploying, another tenant's model (404 exactly like a name that does not exist), path traversal
in names, oversized and malformed bodies. Every refusal is JSON with a message."""

from __future__ import annotations

import pytest

from tests.api.conftest import auth

PROMOTE = "/v1/models/churn/promote"
REASON = {"reason": "attack test"}


def _refused(response, status: int, reason: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"], body
    if reason:
        assert body["reason"] == reason, body
    return body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", PROMOTE, REASON),
        ("post", "/v1/models/churn/rollback", REASON),
        ("post", "/v1/models/churn/versions/1/archive", REASON),
        ("post", "/v1/deployments/churn", REASON),
        ("put", "/v1/deployments/churn/canary", {"percent": 50, **REASON}),
        ("delete", "/v1/deployments/churn", None),
        (
            "post",
            "/v1/runs/backfill",
            {
                "model": "churn",
                "stage": "scoring",
                "start": "2025-01-01",
                "end": "2025-01-02",
                **REASON,
            },
        ),
    ],
)
@pytest.mark.parametrize("role", ["viewer", "data-scientist"])
def test_only_ml_engineers_change_what_serves(client, role, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    answer = client.request(method, path, headers=auth(role=role), **kwargs)
    _refused(answer, 403, "forbidden")


def test_a_viewer_reads_but_cannot_launch_training(client):
    assert client.get("/v1/models/churn", headers=auth(role="viewer")).status_code == 200
    retrain = {"model": "churn", **REASON}
    _refused(client.post("/v1/runs/retrain", json=retrain, headers=auth(role="viewer")), 403)
    _refused(client.get("/v1/models/churn/features", headers=auth(role="viewer")), 403)


def test_a_data_scientist_launches_training(client):
    """Admitted (the orchestrator is not running here, so the launch itself is a clear 503)."""
    answer = client.post(
        "/v1/runs/retrain", json={"model": "churn", **REASON}, headers=auth(role="data-scientist")
    )
    body = _refused(answer, 503, "orchestrator_unreachable")
    assert "Dagster webserver at http://127.0.0.1:" in body["error"]


OTHER_TENANT = auth(tenant="wholesale", role="admin")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v1/models/{m}", None),
        ("get", "/v1/models/{m}/versions", None),
        ("get", "/v1/models/{m}/features", None),
        ("post", "/v1/models/{m}/promote", REASON),
        ("post", "/v1/models/{m}/rollback", REASON),
        ("post", "/v1/models/{m}/versions/1/archive", REASON),
        ("get", "/v1/deployments/{m}", None),
        ("post", "/v1/deployments/{m}", REASON),
        ("put", "/v1/deployments/{m}/canary", {"percent": 5, **REASON}),
        ("delete", "/v1/deployments/{m}", None),
        ("get", "/v1/monitoring/{m}/checks", None),
        ("get", "/v1/monitoring/{m}/metrics", None),
        ("get", "/v1/monitoring/{m}/limits", None),
        ("get", "/v1/monitoring/{m}/alerts", None),
        ("post", "/v1/runs/retrain", {"model": "{m}", **REASON}),
    ],
)
def test_another_tenants_model_is_indistinguishable_from_none(client, method, path, body):
    answers = []
    for name in ("churn", "fraud"):  # churn is retail's; fraud exists nowhere
        payload = {
            k: v.format(m=name) if isinstance(v, str) else v for k, v in (body or {}).items()
        }
        kwargs = {"json": payload} if body is not None else {}
        answer = client.request(method, path.format(m=name), headers=OTHER_TENANT, **kwargs)
        answers.append(
            (answer.status_code, answer.json()["reason"], answer.json()["error"].replace(name, "X"))
        )
    assert answers[0] == answers[1] == (404, "not_found", "model 'X' not found")


def test_another_tenant_lists_nothing(client):
    for path in ("/v1/models", "/v1/deployments", "/v1/tables"):
        answer = client.get(path, headers=OTHER_TENANT)
        assert answer.status_code == 200 and answer.json() == [], (path, answer.text)
    client.post(PROMOTE, json=REASON, headers=auth())  # retail's row
    own = client.get("/v1/audit", headers=OTHER_TENANT).json()
    assert {row["tenant"] for row in own} <= {"wholesale"}  # its own refused calls at most
    assert "retail" in {row["tenant"] for row in client.get("/v1/audit", headers=auth()).json()}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/..%2F..%2Fetc%2Fpasswd/promote",
        "/v1/models/%2e%2e/promote",
        "/v1/models/churn%00/promote",
        "/v1/models/churn%2F..%2Fchurn/promote",
        "/v1/models/..%5C..%5Cwindows/promote",
        "/v1/models/churn/versions/..%2F1/archive",
        "/v1/models/churn/versions/-1/archive",
        "/v1/models/" + "a" * 300 + "/promote",
    ],
)
def test_path_traversal_in_names_is_refused(client, path):
    answer = client.post(path, json=REASON, headers=auth())
    assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)
    assert answer.json()["error"]


@pytest.mark.parametrize(
    "path", ["/v1/runs/..%2F..%2Fgraphql", "/v1/runs/%2e%2e", "/v1/monitoring/..%2Fchurn/checks"]
)
def test_path_traversal_in_reads_is_refused(client, path):
    answer = client.get(path, headers=auth())
    assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)


def test_traversal_in_a_body_name_is_refused(client):
    body = {"model": "../churn", **REASON}
    _refused(client.post("/v1/runs/retrain", json=body, headers=auth()), 422, "invalid_request")


def test_oversized_bodies_are_refused_before_they_are_read(client):
    big = {"reason": "x" * 20_000}
    _refused(client.post(PROMOTE, json=big, headers=auth()), 413, "payload_too_large")

    def chunks():  # no content-length: counted as it arrives
        for _ in range(40):
            yield b"x" * 1024

    answer = client.post(
        PROMOTE, content=chunks(), headers={**auth(), "content-type": "application/json"}
    )
    _refused(answer, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'{"reason": ""}',
        b'{"reason": 5}',
        b'{"reason": "ok", "extra": 1}',
        b"\xff\xfe",
        b'{"reason": "' + b"\x00" + b'"}',
    ],
)
def test_malformed_bodies_are_422_with_a_message(client, content):
    answer = client.post(
        PROMOTE, content=content, headers={**auth(), "content-type": "application/json"}
    )
    assert answer.status_code == 422, (content, answer.text)
    assert answer.json()["reason"] == "invalid_request"


def test_bad_canary_percent_and_backfill_range(client):
    canary = {"percent": 101, **REASON}
    _refused(client.put("/v1/deployments/churn/canary", json=canary, headers=auth()), 422)
    backfill = {
        "model": "churn",
        "stage": "scoring",
        "start": "2025-02-01",
        "end": "2025-01-01",
        **REASON,
    }
    body = _refused(client.post("/v1/runs/backfill", json=backfill, headers=auth()), 422)
    assert "end is before start" in body["error"]


def test_library_refusals_are_conflicts_not_faults(client):
    """Nothing registered yet: promote, rollback, deploy and archive say why, with 409/404."""
    assert (
        "no challenger" in _refused(client.post(PROMOTE, json=REASON, headers=auth()), 409)["error"]
    )
    rollback = client.post("/v1/models/churn/rollback", json=REASON, headers=auth())
    assert "no champion" in _refused(rollback, 409)["error"]
    deploy = client.post("/v1/deployments/churn", json=REASON, headers=auth())
    assert "no champion to deploy" in _refused(deploy, 409)["error"]
    archive = client.post("/v1/models/churn/versions/7/archive", json=REASON, headers=auth())
    _refused(archive, 404, "not_found")
    canary = client.put(
        "/v1/deployments/churn/canary", json={"percent": 5, **REASON}, headers=auth()
    )
    assert "no canary running" in _refused(canary, 409)["error"]


def test_unknown_routes_and_methods_are_json(client):
    _refused(client.get("/v1/nothing", headers=auth()), 404, "unknown_route")
    _refused(client.patch("/v1/models/churn", json={}, headers=auth()), 405, "method_not_allowed")
