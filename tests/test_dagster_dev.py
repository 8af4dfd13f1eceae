"""`dagster dev` from the repo root, with no arguments, serves the code location through
workspace.yaml. Started on a free loopback port, queried over GraphQL, stopped by its PID."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlops_assets.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev` on a free port with an empty instance and data folder; stopped by its PID."""
    tmp_path = tmp_path_factory.mktemp("dagster_dev")
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        # The daemon evaluates the sensors: keep them on an empty data folder.
        "MLOPS_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    proc = subprocess.Popen(
        [str(bin_dir / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so every child stops with it
    )
    try:
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_dagster_dev_loads_the_workspace(dagster_dev):
    port = dagster_dev
    deadline = time.monotonic() + 120
    locations = None
    while time.monotonic() < deadline:
        try:
            data = _graphql(
                port,
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }",
            )
            locations = data["data"]["workspaceOrError"]["locationEntries"]
            if locations and all(e["loadStatus"] == "LOADED" for e in locations):
                break
        except OSError:
            pass
        time.sleep(1)
    assert locations == [{"name": "mlops_assets", "loadStatus": "LOADED"}]
    nodes = _graphql(
        port,
        "{ assetNodes { assetKey { path } groupName "
        "assetChecksOrError { ... on AssetChecks { checks { name } } } } }",
    )["data"]["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert "warehouse/gold/customer_features" in keys
    assert "landing/orders" in keys
    checks = {
        "/".join(n["assetKey"]["path"]): {c["name"] for c in n["assetChecksOrError"]["checks"]}
        for n in nodes
    }
    assert checks["monitoring/churn/feature_drift"] == {"feature_drift_within_thresholds"}
    assert checks["deployments/churn/endpoint"] == {"endpoint_serves_the_registry_champion"}
    # The daemon that `dagster dev` runs evaluates the sensors (nothing degraded here: skips).
    ticks = {}
    while time.monotonic() < deadline + 60 and len(ticks) < 2:
        repos = _graphql(
            port,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name "
            "sensorState { status ticks(limit: 1) { status skipReason } } } } } } }",
        )["data"]["repositoriesOrError"]["nodes"]
        sensors = {s["name"]: s["sensorState"] for r in repos for s in r["sensors"]}
        assert {k: v["status"] for k, v in sensors.items()} == {
            "retrain_churn_on_degradation": "RUNNING",
            "canary_churn": "RUNNING",
        }
        ticks = {k: v["ticks"][0] for k, v in sensors.items() if v["ticks"]}
        time.sleep(2)
    assert ticks["retrain_churn_on_degradation"]["status"] == "SKIPPED"
    assert "no degradation" in ticks["retrain_churn_on_degradation"]["skipReason"]
    assert ticks["canary_churn"]["skipReason"] == "no canary running"


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.ui
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless Chromium is not installed (/usr/bin/chromium)"
)
def test_the_asset_graph_renders_in_headless_chromium(dagster_dev, tmp_path):
    port = dagster_dev
    _graphql(port, "{ assetNodes { id } }")  # loaded (the other test waits for it too)
    shot = tmp_path / "monitoring_graph.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,900",
            "--virtual-time-budget=15000",
            f"--screenshot={shot}",
            f"http://127.0.0.1:{port}/asset-groups/monitoring",
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
