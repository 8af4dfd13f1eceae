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


def test_dagster_dev_loads_the_workspace(tmp_path: Path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [str(bin_dir / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so every child stops with it
    )
    try:
        deadline = time.monotonic() + 120
        locations = None
        while time.monotonic() < deadline:
            try:
                data = _graphql(
                    port,
                    "{ workspaceOrError { ... on Workspace { locationEntries { name "
                    "loadStatus } } } }",
                )
                locations = data["data"]["workspaceOrError"]["locationEntries"]
                if locations and all(e["loadStatus"] == "LOADED" for e in locations):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert locations == [{"name": "mlops_assets", "loadStatus": "LOADED"}]
        nodes = _graphql(port, "{ assetNodes { assetKey { path } groupName } }")["data"][
            "assetNodes"
        ]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert "warehouse/gold/customer_features" in keys
        assert "landing/orders" in keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
