"""The audit log has exactly one row per mutating call, refused ones included (401, 403, 404,
405, 413, 422, 429), none per read; the row is there when the answer arrives; the CLI's rollout
commands land in the same Iceberg table; analysts read it with SQL."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mlops_assets.api.ratelimit import MemoryRateLimiter
from mlops_assets.settings import PROJECT_ROOT
from tests.api.conftest import audit_rows, auth

PROMOTE = "/v1/models/churn/promote"
REASON = {"reason": "audit test"}


def test_exactly_one_row_per_mutating_call(world, make_client):
    client = make_client(limiter=MemoryRateLimiter(limit=12, window_seconds=3600))
    before = len(audit_rows(world))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    calls = [
        ("post", PROMOTE, {}, REASON, 401),
        ("post", PROMOTE, auth(exp=past, iat=past - dt.timedelta(hours=1)), REASON, 401),
        ("post", PROMOTE, auth(role="viewer"), REASON, 403),
        ("post", PROMOTE, auth(tenant="wholesale"), REASON, 404),
        ("post", PROMOTE, auth(), {"reason": "x" * 50_000}, 413),
        ("post", PROMOTE, auth(), {"reason": ""}, 422),
        ("post", PROMOTE, auth(), REASON, 409),
        ("delete", "/v1/deployments/churn", auth(), None, 200),
        ("patch", "/v1/models/churn", auth(), {}, 405),
        ("post", "/v1/nothing/here", auth(), {}, 404),
        ("get", "/v1/models", auth(), None, 200),
        ("get", "/v1/deployments/churn", auth(), None, 200),
        ("get", "/v1/audit", auth(), None, 200),
        ("post", "/v1/models/churn/rollback", auth(), REASON, 409),
        ("exhaust the tenant's limit with reads", "", auth(), None, 429),
        ("post", "/v1/models/churn/rollback", auth(), REASON, 429),
        ("put", "/v1/deployments/churn/canary", auth(), {"percent": 1, **REASON}, 429),
    ]
    request_ids = []
    for method, path, headers, body, status in calls:
        if method.startswith("exhaust"):
            while client.get("/v1/models", headers=headers).status_code != 429:
                pass
            continue
        kwargs = {"json": body} if body is not None else {}
        answer = client.request(method, path, headers=headers, **kwargs)
        assert answer.status_code == status, (method, path, answer.text)
        if status == 429:
            assert int(answer.headers["retry-after"]) >= 1
        if method != "get":
            request_ids.append(answer.headers["x-request-id"])
            # Committed before the answer was sent: readable now.
            assert request_ids[-1] in {r["request_id"] for r in audit_rows(world)}
    rows = audit_rows(world)
    new = [r for r in rows if r["request_id"] in set(request_ids)]
    assert len(rows) - before == len(request_ids) == len(new) == 13
    assert Counter(r["status"] for r in new) == Counter(
        s for m, *_, s in calls if m in ("post", "put", "patch", "delete")
    )
    anonymous = [r for r in new if r["status"] == 401]
    assert {(r["actor"], r["tenant"]) for r in anonymous} == {("anonymous", "")}
    refused = {r["status"]: r for r in new}
    assert refused[403]["role"] == "viewer" and refused[403]["outcome"] == "refused"
    assert refused[404]["tenant"] == "wholesale" and refused[404]["target"] == "churn"
    assert refused[413]["arguments"].count("not read") == 1
    assert refused[200]["action"] == "DELETE /v1/deployments/{model}"
    assert refused[200]["outcome"] == "ok" and refused[200]["actor"] == "alice"


def test_the_cli_writes_to_the_same_log(world):
    """`mlops stop` and a refused `mlops promote`, run as a user types them."""
    env = {**os.environ, "MLOPS_DATA_DIR": str(world["settings"].data_dir)}
    mlops = str(Path(sys.executable).parent / "mlops")
    run = {"cwd": PROJECT_ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300}
    stopped = subprocess.run([mlops, "stop", "churn"], check=False, **run)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    promoted = subprocess.run(
        [mlops, "promote", "churn", "--reason", "cli test"], check=False, **run
    )
    assert promoted.returncode == 1 and "no challenger" in promoted.stderr
    cli = [r for r in audit_rows(world) if r["source"] == "cli"]
    assert sorted(r["action"] for r in cli) == ["cli promote", "cli stop"]
    assert {r["actor"] for r in cli} == {f"cli:{getpass.getuser()}"}
    assert {r["tenant"] for r in cli} == {"retail"}  # the repo's deploy/api/access.yaml
    outcome = {r["action"]: r for r in cli}
    assert outcome["cli stop"]["outcome"] == "ok" and outcome["cli stop"]["status"] is None
    assert outcome["cli promote"]["outcome"] == "error"
    assert "no challenger" in outcome["cli promote"]["result"]
    assert '"reason": "cli test"' in outcome["cli promote"]["arguments"]


def test_analysts_read_the_audit_log_with_sql(world, client):
    client.post(PROMOTE, json=REASON, headers=auth())
    frame = world["resources"].warehouse.analyst_sql(
        "select source, count(*) as n from iceberg.audit.actions group by source order by source"
    )
    counts = dict(zip(frame["source"], frame["n"], strict=True))
    rows = audit_rows(world)
    assert counts == dict(Counter(r["source"] for r in rows))
    assert counts["api"] >= 1


def test_the_api_serves_the_tenants_rows_newest_first(world, client):
    client.post(PROMOTE, json={"reason": "the newest"}, headers=auth())
    rows = client.get("/v1/audit?limit=5", headers=auth()).json()
    assert len(rows) <= 5 and rows[0]["arguments"].count("the newest") == 1
    assert {r["tenant"] for r in rows} == {"retail"}
    assert client.get("/v1/audit", headers=auth(role="data-scientist")).status_code == 403
