"""The control API on real engines: a scratch data folder (MLflow on SQLite, the pyiceberg SQL
catalog), an access file with two tenants, tokens minted with PyJWT, and the app served in
process through Starlette's test client (real ASGI, real middleware)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from mlops_assets.settings import PROJECT_ROOT, ApiSettings
from mlops_assets.testing import free_port, scratch_world

SECRET = "test-secret-" + "s" * 40
ISSUER, AUDIENCE = "https://issuer.test", "mlops-api-test"
ACCESS = """
roles:
  viewer: [models:read, deployments:read, runs:read, monitoring:read, tables:read]
  data-scientist: [models:read, features:read, deployments:read, runs:read, runs:retrain,
                   monitoring:read, tables:read]
  ml-engineer: [models:read, models:write, features:read, deployments:read, deployments:write,
                runs:read, runs:retrain, runs:backfill, monitoring:read, tables:read, audit:read]
  admin: [models:read, models:write, features:read, deployments:read, deployments:write,
          runs:read, runs:retrain, runs:backfill, monitoring:read, tables:read, audit:read]
tenants:
  retail:
    models: [churn]
    alert_routes:
      - monitors: [performance]
        channel: "slack:#retail"
  wholesale:
    models: []
"""


def claims(**changes: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    values = {
        "sub": "alice",
        "tenant": "retail",
        "role": "ml-engineer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + dt.timedelta(minutes=10),
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def token(
    key: Any = SECRET, algorithm: str = "HS256", headers: dict | None = None, **changes
) -> str:
    return jwt.encode(claims(**changes), key, algorithm=algorithm, headers=headers)


def auth(**changes: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**changes)}"}


def api_settings(access_file: Path, **changes: Any) -> ApiSettings:
    values = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ("HS256",),
        "jwt_secret": SECRET,
        "access_file": access_file,
        "dagster_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "read_cache_seconds": 0,
        **changes,
    }
    return ApiSettings(**values)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A scratch data folder with its embedded engines, and the test access file."""
    root = tmp_path_factory.mktemp("api")
    access = root / "access.yaml"
    access.write_text(ACCESS)
    with scratch_world(root, 300) as (settings, res):
        yield {"settings": settings, "resources": res, "access": access, "root": root}


@pytest.fixture(scope="module")
def make_client(world):
    """Build an app on the world's engines (settings changed as asked) and its test client."""
    from fastapi.testclient import TestClient

    from mlops_assets.api.app import create_app

    def build(limiter=None, **changes: Any) -> TestClient:
        app = create_app(api_settings(world["access"], **changes), world["resources"], limiter)
        return TestClient(app, raise_server_exceptions=False)

    return build


@pytest.fixture(scope="module")
def client(make_client):
    return make_client()


def audit_rows(world: dict[str, Any]) -> list[dict[str, Any]]:
    from mlops_assets.lakehouse.audit import AuditLog

    return AuditLog(world["resources"].lakehouse.catalog()).read(limit=100_000)


# -- a real Dagster webserver ----------------------------------------------------------------------

# Runs launched through it are queued, never started: no daemon dequeues them.
QUEUED_INSTANCE = """
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
telemetry:
  enabled: false
"""


@pytest.fixture(scope="package")
def dagster_webserver(tmp_path_factory) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` on a free loopback port, over an empty instance and
    data folder; its URL. Stopped by its PID."""
    from mlops_assets.processes import stop_process_group
    from mlops_assets.testing import small_world
    from mlops_assets.world import save_world

    root = tmp_path_factory.mktemp("webserver")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(QUEUED_INSTANCE)
    save_world(root / "data", small_world(300, days=30))
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MLOPS_DATA_DIR": str(root / "data"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    command = [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(
        [*command, "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_loaded(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def _wait_loaded(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import requests

    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            data = requests.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
            entries = data["data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise AssertionError(f"dagster-webserver did not load the workspace within {timeout:.0f}s")
