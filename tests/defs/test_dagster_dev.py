"""`dagster dev` from the repo root, with no arguments, serves the code location through
workspace.yaml. Started on a free loopback port, queried over GraphQL, stopped by its PID."""

import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.datagen.landing import land_day, partition_files
from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.processes import stop_process_group
from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.testing import small_world
from mlops_assets.world import save_world

pytestmark = pytest.mark.slow
# The UI's data folder holds a small world that drifts from its fourth day: a UI run that generated
# any other world would give different bytes.
WORLD = small_world(2000, days=60, covariate_drift_from=dt.date(2025, 1, 4))
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
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
    save_world(tmp_path / "data", WORLD)
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
        _wait_loaded(port)
        yield port, home, tmp_path / "data"
    finally:
        stop_process_group(proc)


def _wait_loaded(port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = _graphql(
                port,
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }",
            )
            entries = data["data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev did not load the workspace within {timeout:.0f}s")


def _finished_ticks(port: int) -> dict[str, dict]:
    """Each sensor's newest *finished* tick (a tick still STARTED has no verdict yet)."""
    repos = _graphql(
        port,
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name "
        "sensorState { status ticks(limit: 5) { status skipReason } } } } } } }",
    )["data"]["repositoriesOrError"]["nodes"]
    sensors = {s["name"]: s["sensorState"] for r in repos for s in r["sensors"]}
    # Every model's retraining, online drift and canary sensors, and the alert sensor, running
    # by default.
    assert {k: v["status"] for k, v in sensors.items()} == {
        "lifecycle_alerts": "RUNNING",
        **{
            name: "RUNNING"
            for model in ("churn", "fraud")
            for name in (
                f"retrain_{model}_on_degradation",
                f"{model}_online_drift_sensor",
                f"canary_{model}",
            )
        },
    }
    return {
        name: next(t for t in state["ticks"] if t["status"] != "STARTED")
        for name, state in sensors.items()
        if any(t["status"] != "STARTED" for t in state["ticks"])
    }


def test_dagster_dev_loads_the_workspace(dagster_dev):
    port, _, _ = dagster_dev
    entries = _graphql(
        port, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    )["data"]["workspaceOrError"]["locationEntries"]
    assert entries == [{"name": "mlops_assets", "loadStatus": "LOADED"}]
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
    # Poll for a finished tick of each, however slow the machine (no assumption on timing).
    deadline = time.monotonic() + 300
    ticks = _finished_ticks(port)
    while len(ticks) < 7 and time.monotonic() < deadline:
        time.sleep(2)
        ticks = _finished_ticks(port)
    for model in ("churn", "fraud"):
        assert ticks[f"retrain_{model}_on_degradation"]["status"] == "SKIPPED"
        assert "no degradation" in ticks[f"retrain_{model}_on_degradation"]["skipReason"]
        assert ticks[f"canary_{model}"]["skipReason"] == "no canary running"
        # No server has logged a request: the stream sensor reads nothing and says so.
        online = ticks[f"{model}_online_drift_sensor"]
        assert online["status"] == "SKIPPED" and "0 new logged requests" in online["skipReason"]
    alerts = ticks["lifecycle_alerts"]
    assert alerts["status"] == "SKIPPED" and "no webhook configured" in alerts["skipReason"]


def test_partitions_cover_the_worlds_days(dagster_dev):
    port, _, _ = dagster_dev
    node = _graphql(
        port,
        '{ assetNodeOrError(assetKey: {path: ["landing", "orders"]}) '
        "{ ... on AssetNode { partitionKeys } } }",
    )["data"]["assetNodeOrError"]
    keys = node["partitionKeys"]
    assert len(keys) == WORLD.days
    assert (keys[0], keys[-1]) == (str(WORLD.start_date), str(WORLD.last_day))


def _digests(landing: Path, day: dt.date) -> dict[str, str]:
    return {
        table: hashlib.sha256(Path(path).read_bytes()).hexdigest()
        for table in LANDING_TABLES
        for path in partition_files(str(landing), table, day)
    }


def test_ui_materialize_of_one_partition_relands_that_day_identically(dagster_dev):
    """What the UI's Materialize sends for one partition of the landing assets: a launchRun of the
    asset job with the partition tag; the run lands that day, its blocking checks pass, and the
    files are byte-identical to the ones the demo's process wrote for the same world."""
    port, home, data = dagster_dev
    day = WORLD.start_date + dt.timedelta(days=5)
    landing = data / "landing"
    land_day(WORLD, str(landing), day)  # as `mlops demo` lands it, in another process
    before = _digests(landing, day)
    assert set(before) == set(LANDING_TABLES)
    keys = [{"path": ["landing", table]} for table in LANDING_TABLES]
    checks = [
        {"assetKey": key, "name": name}
        for key in keys
        for name in (
            "landing_schema_matches_contract",
            "landing_keys_not_null",
            "landing_keys_unique",
        )
    ]
    params = {
        "selector": {
            "repositoryLocationName": "mlops_assets",
            "repositoryName": "__repository__",
            "pipelineName": "__ASSET_JOB",
            "assetSelection": keys,
            "assetCheckSelection": checks,
        },
        "mode": "default",
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": str(day)}]},
    }
    launched = _graphql(port, LAUNCH, {"params": params})["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status, deadline = None, time.monotonic() + 600
    while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        time.sleep(1)
        run = _graphql(port, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}')
        status = run["data"]["runOrError"]["status"]
    assert status == "SUCCESS"
    assert _digests(landing, day) == before
    assert sorted(p.name for p in (landing / "orders").iterdir()) == [f"dt={day}"]
    instance = dg.DagsterInstance.from_config(str(home))
    evaluations = [
        record.event_log_entry.dagster_event.asset_check_evaluation_data
        for record in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    ]
    assert len(evaluations) == len(checks)
    assert all(e.passed for e in evaluations)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.ui
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless Chromium is not installed (/usr/bin/chromium)"
)
def test_the_asset_graph_renders_in_headless_chromium(dagster_dev, tmp_path):
    port, _, _ = dagster_dev
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
