"""The tools' own CLIs on the project, as their users type them: `dvc status` / `dvc pull` in a fresh
checkout after the dataset was built the way `make demo` builds it, `mlflow ui` on the registry,
and `dagster asset list` / `definitions validate` / `asset materialize` on the code location.
(`feast` is exercised in tests/cli/test_feast_cli.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.processes import stop_process_group
from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.testing import copy_project, free_port, register_quick_model

BIN = Path(sys.executable).parent
CLONE_DAYS = 100

# Run inside a project checkout (cwd): that checkout's code, its default data folder unless
# MLOPS_DATA_DIR says otherwise. Lands a small world, builds gold, applies Feast, then
# materializes the dataset asset (and its checks) as the demo's run does, with the environment's
# resources.
BUILD = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import dagster as dg
import mlops_assets
from mlops_assets.defs.features.datasets import build_dataset
from mlops_assets.model_config import model_configs
from mlops_assets.resources import resources_for
from mlops_assets.settings import get_settings
from mlops_assets.testing import build_shop, small_world
from mlops_assets.world import save_world

assert mlops_assets.__file__.startswith(os.getcwd()), mlops_assets.__file__
settings = get_settings()
save_world(settings.data_dir, small_world(2000, days=int(sys.argv[1])))
build_shop(settings, days=int(sys.argv[1]))
# Every model's training set (one DVC stage each), as the lakehouse job versions them.
services = {c.feature_service: c for c in model_configs().values()}
result = dg.materialize(
    [build_dataset(c) for c in services.values()],
    resources=resources_for(settings.env, settings),
    instance=dg.DagsterInstance.ephemeral(),
)
checks = [
    (c.check_name, c.passed)
    for c in result.get_asset_check_evaluations()
    if c.asset_key.path[-1] == "churn_v1"  # a small world has too few frauds for their check
]
meta = result.asset_materializations_for_node("datasets__churn_v1")[0].metadata
print(json.dumps({"md5": meta["dvc_md5"].value, "path": meta["path"].value, "checks": checks}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of the project's or the tools' overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "DVC_", "DAGSTER_", "FEAST_", "MLFLOW_"))
    }
    return {**env, "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600):
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, clean_env())


def build(checkout: Path, env: dict[str, str]) -> dict:
    proc = run([sys.executable, "-c", BUILD, str(CLONE_DAYS)], checkout, env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def git(checkout: Path, *args: str) -> str:
    return run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        checkout,
        clean_env(),
    ).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh checkout of the project (the working tree's files that git lists, in a new git
    repository), after the dataset was built there with the default data folder ./data."""
    checkout = copy_project(tmp_path_factory.mktemp("fresh") / "lakehouse-mlops")
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "checkout")
    summary = build(checkout, clean_env())
    assert summary["checks"] and all(passed for _, passed in summary["checks"])
    assert summary["path"] == str(checkout / "datasets" / "churn_v1")
    # This world's dataset version, committed as a user commits dvc.lock.
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "dataset version")
    return checkout


@pytest.mark.slow
def test_dvc_status_and_pull_work_in_a_fresh_checkout(clone):
    dataset = clone / "datasets" / "churn_v1"
    original = files(dataset)
    assert set(original) == {"train.parquet", "validation.parquet", "test.parquet", "schema.json"}
    lock = (clone / "dvc.lock").read_text()

    # The demo again on the same world rebuilds landing, gold and the dataset: same bytes, same
    # hash, so the tracked dvc.lock does not change.
    shutil.rmtree(clone / "data" / "gold")
    (clone / "data" / "warehouse.duckdb").unlink()
    shutil.rmtree(dataset)
    build(clone, clean_env())
    assert git(clone, "status", "--porcelain") == ""
    assert (clone / "dvc.lock").read_text() == lock and files(dataset) == original

    # The DVC CLI, from the project root, with no step by hand.
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
    shutil.rmtree(dataset)
    shutil.rmtree(clone / "data" / "dvc" / "cache")
    assert "not in cache:       datasets/churn_v1" in dvc(clone, "status").stdout
    dvc(clone, "pull")
    assert files(dataset) == original
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
    assert git(clone, "status", "--porcelain") == ""
    # DVC kept its state in the data folder, nothing beside the checkout (a relative
    # site_cache_dir used to be read from the working directory: ../data/dvc/site).
    assert not (clone.parent / "data").exists()
    assert (clone / "data" / "dvc" / "site").is_dir()


@pytest.mark.slow
def test_another_data_folder_leaves_the_checkout_untouched(clone, tmp_path):
    dataset = clone / "datasets" / "churn_v1"
    before = files(dataset), (clone / ".dvc" / "config.local").read_text()
    other = tmp_path / "second-world"
    # No MLOPS_DVC_ROOT: the data folder alone decides, for the asset and for its checks.
    summary = build(clone, clean_env(MLOPS_DATA_DIR=str(other)))
    assert summary["path"] == str(other / "datasets" / "churn_v1")
    assert summary["checks"] and all(passed for _, passed in summary["checks"])
    assert git(clone, "status", "--porcelain") == ""
    assert (files(dataset), (clone / ".dvc" / "config.local").read_text()) == before

    # The second world's DVC project is the data folder; the DVC CLI works there as well.
    built = files(other / "datasets" / "churn_v1")
    assert "Data and pipelines are up to date" in dvc(other, "status").stdout
    shutil.rmtree(other / "datasets" / "churn_v1")
    shutil.rmtree(other / "dvc" / "cache")
    dvc(other, "pull")
    assert files(other / "datasets" / "churn_v1") == built
    # ... and so does `mlops dataset pull <md5>`, the way a model's lineage is fetched.
    pulled = tmp_path / "pulled"
    command = ["-m", "mlops_assets.cli", "dataset", "pull", summary["md5"], "--out", str(pulled)]
    run(
        [sys.executable, *command],
        clone,
        clean_env(MLOPS_DATA_DIR=str(other)),
    )
    assert files(pulled) == built
    assert git(clone, "status", "--porcelain") == ""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def get_mlmodel(base: str, model_id: str) -> dict:
    """A logged model's MLmodel file, read through the UI's artifact endpoint."""
    import yaml

    with urllib.request.urlopen(
        f"{base}/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files"
        "?artifact_file_path=MLmodel",
        timeout=30,
    ) as response:
        return yaml.safe_load(response.read())


def mlflow_ui(registry, cwd: Path, port: int) -> subprocess.Popen:
    """The real `mlflow ui` on `registry`, as a user starts it, in its own process group."""
    return subprocess.Popen(
        [
            *(str(BIN / "mlflow"), "ui", "--backend-store-uri", registry.tracking_uri),
            *("--default-artifact-root", registry.artifact_root),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: stopped with its workers by the caller
    )


def wait_until_healthy(proc: subprocess.Popen, base: str, timeout: float = 180) -> None:
    """Until `base`/health answers 200; fails if the process exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        try:
            if urllib.request.urlopen(f"{base}/health", timeout=5).status == 200:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"mlflow ui did not answer within {timeout:g} s"
        time.sleep(1)


@pytest.mark.slow
def test_mlflow_ui_shows_the_registry(clone, settings, resources):
    """A model registered the project's way, then the real `mlflow ui` on that registry: the
    model, its version and lineage tags, its alias and its signature come back over REST."""
    from mlops_assets.model_config import model_configs
    from mlops_assets.training.registry import CHAMPION, client

    dataset = clone / "datasets" / "churn_v1"
    config = model_configs()["churn"]
    name = config.registered_model
    registry = resources.model_registry.registry()
    version = register_quick_model(registry, config, dataset)
    client(registry).set_registered_model_alias(name, CHAMPION, version)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = mlflow_ui(registry, settings.data_dir, port)
    try:
        wait_until_healthy(proc, base)

        api = f"{base}/api/2.0/mlflow"
        quoted = urllib.parse.quote(name)
        model = get_json(f"{api}/registered-models/get?name={quoted}")["registered_model"]
        assert model["name"] == name
        assert {"alias": CHAMPION, "version": version} in model["aliases"]
        mv = get_json(f"{api}/model-versions/get?name={quoted}&version={version}")
        mv = mv["model_version"]
        assert mv["status"] == "READY" and CHAMPION in mv["aliases"]
        tags = {t["key"]: t["value"] for t in mv["tags"]}
        assert tags["feature_service"] == "churn_v1" and "dvc_md5" in tags
        by_alias = get_json(f"{api}/registered-models/alias?name={quoted}&alias={CHAMPION}")
        assert by_alias["model_version"]["version"] == version

        # The logged model behind the version and its MLmodel file, as the UI shows them.
        model_id = mv["source"].removeprefix("models:/")
        logged = get_json(f"{api}/logged-models/{model_id}")["model"]["info"]
        assert logged["source_run_id"] == mv["run_id"]
        mlmodel = get_mlmodel(base, model_id)
        inputs = [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]
        features = json.loads((dataset / "schema.json").read_text())["features"]
        assert inputs == [f for f in features if f != "last_order_at"]  # raw timestamp dropped
        assert mlmodel["signature"]["outputs"]
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def dagster_env(tmp_path_factory) -> dict[str, str]:
    """A private instance (the embedded dagster.yaml) and a data folder with a small world."""
    from mlops_assets.instance_storage import install_local_instance
    from mlops_assets.world import World, save_world

    root = tmp_path_factory.mktemp("dagster_cli")
    home = root / "dagster_home"
    install_local_instance(home)
    world = World(n_customers=2000, covariate_drift_from=None, concept_drift_from=None)
    save_world(root / "data", world)
    return clean_env(DAGSTER_HOME=str(home), MLOPS_DATA_DIR=str(root / "data"))


def dagster(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "dagster"), *args, "-m", "mlops_assets.definitions"], PROJECT_ROOT, env)


def test_dagster_asset_list_selects_by_key(dagster_env):
    listed = dagster(dagster_env, "asset", "list", "--select", "key:landing/*").stdout.split()
    assert listed == [
        "landing/chargebacks",
        "landing/customers",
        "landing/orders",
        "landing/payments",
        "landing/support_tickets",
    ]


def test_dagster_definitions_validate(dagster_env):
    proc = dagster(dagster_env, "definitions", "validate")
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_dagster_materializes_one_landing_partition(dagster_env):
    import dagster as dg

    day = "2025-01-05"
    dagster(dagster_env, "asset", "materialize", "--select", "key:landing/*", "--partition", day)
    landing = Path(dagster_env["MLOPS_DATA_DIR"]) / "landing"
    for table in LANDING_TABLES:
        assert [p.name for p in (landing / table).iterdir()] == [f"dt={day}"]
        assert list((landing / table / f"dt={day}").glob("*.parquet"))

    # The run and its blocking checks, read back from the instance the CLI wrote to.
    home = Path(dagster_env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run_record,) = instance.get_runs()
        assert run_record.status == dg.DagsterRunStatus.SUCCESS
        assert run_record.tags.get("dagster/partition") == day
        evaluations = [
            e.get_dagster_event().asset_check_evaluation_data
            for e in instance.all_logs(
                run_record.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        ]
    results = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evaluations}
    expected = {
        (f"landing/{table}", check)
        for table in LANDING_TABLES
        for check in (
            "landing_schema_matches_contract",
            "landing_keys_not_null",
            "landing_keys_unique",
        )
    }
    assert set(results) == expected and all(results.values())
