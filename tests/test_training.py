"""Training on a real kfp.local pipeline with a real MLflow registry, over a DVC-versioned dataset
built from a small generated shop; the promotion gate and its decision log."""

import datetime as dt
import shutil
import subprocess

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.datasets.training_set import build_training_set, load_labels
from mlops_assets.datasets.versioning import commit_and_push
from mlops_assets.model_config import model_configs
from mlops_assets.settings import PROJECT_ROOT, get_settings
from mlops_assets.training.promotion import champion_at, gate, history
from mlops_assets.training.registry import CHALLENGER, CHAMPION, LINEAGE_TAGS, alias_version, client
from mlops_assets.training.runner import PipelineFailed, run_training
from tests.conftest import build_shop, scratch_world

pytestmark = pytest.mark.slow
CONFIG = model_configs()["churn"]
LINEAGE = {"git_commit": "0" * 40, "dagster_run_id": "test-run"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A DVC repo holding the churn_v1 dataset of a 3000-customer shop; MLflow on SQLite."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("training")
    with scratch_world(root) as settings:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        Repo.init(str(root))
        shutil.copy(PROJECT_ROOT / ".dvc" / "config", root / ".dvc" / "config")
        shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
        shutil.copytree(PROJECT_ROOT / "feature_repo", root / "feature_repo")
        store = build_shop(settings, days=150)
        build_training_set(
            store, "churn_v1", load_labels(settings), settings.datasets_dir / "churn_v1"
        )
        good = commit_and_push(settings, "churn_v1").md5
        yield settings, good


def _variant(settings, name: str, change) -> str:
    """A new DVC version of churn_v1 with `change(frame)` applied to every split."""
    folder = settings.datasets_dir / "churn_v1"
    for split in ("train", "validation", "test"):
        path = folder / f"{split}.parquet"
        frame = change(pd.read_parquet(path))
        frame.to_parquet(path, index=False)
    return commit_and_push(settings, "churn_v1").md5


def _restore(settings, md5: str) -> None:
    from mlops_assets.datasets.versioning import pull

    pull(settings, md5, settings.datasets_dir / "churn_v1")


def _versions(settings) -> list[str]:
    return sorted(
        v.version
        for v in client(settings).search_model_versions(f"name = '{CONFIG.registered_model}'")
    )


def test_pipeline_compiles_to_valid_yaml(tmp_path):
    from kfp import compiler
    from kfp.components import load_component_from_file

    from mlops_assets.pipelines.training_pipeline import training_pipeline

    path = tmp_path / "training_pipeline.yaml"
    compiler.Compiler().compile(training_pipeline, str(path))
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    spec = docs[0]
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"fetch-dataset", "train-model", "evaluate-model", "register-model"}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "dvc_md5",
        "config_json",
        "lineage_json",
    }
    assert tasks["train-model"]["dependentTasks"] == ["fetch-dataset"]
    # Typed artifacts between steps.
    artifacts = spec["components"]["comp-train-model"]["outputDefinitions"]["artifacts"]
    assert artifacts["model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert load_component_from_file(str(path)).name == "model-training"
    # Secrets come from the cluster through kfp-kubernetes, on every step.
    kubernetes = next(d for d in docs if "platforms" in d)["platforms"]["kubernetes"]
    executors = kubernetes["deploymentSpec"]["executors"]
    assert len(executors) == 4
    assert all(e["secretAsEnv"][0]["secretName"] == "mlops-secrets" for e in executors.values())


def test_pipeline_trains_registers_and_the_gate_moves_aliases(world):
    settings, good = world
    first = run_training(settings, CONFIG, good, LINEAGE)
    assert first.metrics["model"]["roc_auc"] > 0.75
    assert first.metrics["model"]["roc_auc"] >= first.metrics["baseline"]["roc_auc"] - 0.02

    # Every lineage tag, on the run and on the registered version.
    mlflow_client = client(settings)
    version = mlflow_client.get_model_version(CONFIG.registered_model, first.model_version)
    for tags in (version.tags, mlflow_client.get_run(first.mlflow_run_id).data.tags):
        assert set(LINEAGE_TAGS) <= set(tags)
        assert tags["dvc_md5"] == good and tags["feature_service"] == "churn_v1"
        assert tags["kfp_run_id"] == first.kfp_run_id and tags["dagster_run_id"] == "test-run"
    run = mlflow_client.get_run(first.mlflow_run_id)
    assert run.data.params["param_max_iter"] == str(CONFIG.params.max_iter)
    # The tuning grid was searched and the registry records the winner's settings.
    trials = mlflow.artifacts.load_dict(f"runs:/{first.mlflow_run_id}/tuning.json")
    assert len(trials) == 6
    best = max(trials, key=lambda t: t["validation_roc_auc"])["params"]
    assert run.data.params["param_max_leaf_nodes"] == str(best["max_leaf_nodes"])
    assert run.data.params["param_learning_rate"] == str(best["learning_rate"])
    assert {
        "model_test_roc_auc",
        "model_test_pr_auc",
        "model_test_f1",
        "model_test_brier",
        "model_test_ece",
    } <= set(run.data.metrics)
    info = mlflow.models.get_model_info(f"models:/{CONFIG.registered_model}/{first.model_version}")
    assert (
        info.signature is not None and "lifetime_value_usd" in info.signature.inputs.input_names()
    )
    assert info.saved_input_example_info is not None

    decision = gate(settings, CONFIG, first.model_version, actor="test")
    assert decision.outcome == CHAMPION
    assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == first.model_version

    # A model trained on shuffled labels is blocked and moves nothing.
    rng = np.random.default_rng(0)
    shuffled = _variant(
        settings, "shuffled", lambda f: f.assign(churned=rng.permutation(f["churned"].to_numpy()))
    )
    bad = run_training(settings, CONFIG, shuffled, LINEAGE)
    bad_decision = gate(settings, CONFIG, bad.model_version, actor="test")
    assert bad_decision.outcome == "rejected"
    assert "ROC AUC" in "; ".join(bad_decision.reasons)
    assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == first.model_version
    assert alias_version(mlflow_client, CONFIG.registered_model, CHALLENGER) is None

    # A second good model becomes challenger; the champion stays.
    _restore(settings, good)
    second = run_training(settings, CONFIG, good, LINEAGE)
    second_decision = gate(settings, CONFIG, second.model_version, actor="test")
    assert second_decision.outcome == CHALLENGER
    assert second_decision.champion_roc_auc_on_holdout is not None
    assert alias_version(mlflow_client, CONFIG.registered_model, CHALLENGER) == second.model_version
    assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == first.model_version

    # The log answers "who served when".
    events = history(settings, CONFIG.registered_model)
    assert [(e["event"], e["outcome"]) for e in events] == [
        ("gate", "champion"),
        ("alias", "champion"),
        ("gate", "rejected"),
        ("gate", "challenger"),
        ("alias", "challenger"),
    ]
    assert (
        champion_at(settings, CONFIG.registered_model, dt.datetime.now(dt.UTC))
        == first.model_version
    )
    assert (
        champion_at(settings, CONFIG.registered_model, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        is None
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_version", "could not pull dataset"),
        ("one_class", "single label class"),
        ("missing_feature", "lacks features the service needs"),
    ],
)
def test_bad_training_input_fails_and_leaves_the_registry_alone(world, case, message):
    settings, good = world
    before = _versions(settings)
    champion = alias_version(client(settings), CONFIG.registered_model, CHAMPION)
    if case == "unknown_version":
        md5 = "0123456789abcdef0123456789abcdef.dir"
    elif case == "one_class":
        md5 = _variant(settings, case, lambda f: f.assign(churned=0))
    else:
        md5 = _variant(settings, case, lambda f: f.drop(columns=["order_count_30d"]))
    try:
        with pytest.raises(PipelineFailed) as err:
            run_training(settings, CONFIG, md5, LINEAGE)
        assert message in str(err.value)
    finally:
        _restore(settings, good)
    assert _versions(settings) == before
    assert alias_version(client(settings), CONFIG.registered_model, CHAMPION) == champion


def test_a_killed_retraining_leaves_the_champion_serving(world):
    """SIGKILL a retraining in the middle of its KFP pipeline: no alias moves and the deployed
    champion keeps answering."""
    import json
    import os
    import signal
    import sys
    import time
    import urllib.request

    from mlops_assets.features.store import feature_store, materialize_window
    from mlops_assets.serving.deployment import stop_server
    from mlops_assets.serving.rollout import deploy
    from tests.conftest import free_port

    settings, good = world
    mlflow_client = client(settings)
    champion = alias_version(mlflow_client, "churn", CHAMPION)
    challenger = alias_version(mlflow_client, "churn", CHALLENGER)
    assert champion is not None  # from the pipeline test above
    start = dt.datetime.combine(settings.world().start_date, dt.time(), tzinfo=dt.UTC)
    materialize_window(feature_store(settings), start, start + dt.timedelta(days=150))
    serving = CONFIG.serving.model_copy(update={"port": free_port(), "canary_percent": 0})
    config = CONFIG.model_copy(update={"serving": serving})
    deploy(settings, config, actor="test", reason="serve before the retraining")
    versions_before = _versions(settings)
    outputs = settings.data_dir / "kfp" / "outputs"
    seen = set(outputs.glob("*")) if outputs.exists() else set()
    script = (
        "from mlops_assets.model_config import model_configs;"
        "from mlops_assets.training.runner import run_training;"
        "from mlops_assets.settings import get_settings;"
        f"run_training(get_settings(), model_configs()['churn'], {good!r}, {{}})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900  # generous: a loaded machine is slow, not wrong
        while time.monotonic() < deadline:  # kill once the training step has started
            runs = set(outputs.glob("*")) - seen
            if any((run / "train-model").exists() for run in runs):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the retraining never reached its training step")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert alias_version(mlflow_client, "churn", CHAMPION) == champion
        assert alias_version(mlflow_client, "churn", CHALLENGER) == challenger
        assert _versions(settings) == versions_before
        gold = pd.read_parquet(settings.gold_dir / "customer_features.parquet")
        customer = int(gold["customer_id"].iloc[-1])
        body = json.dumps({"instances": [{"customer_id": customer}]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{serving.port}/v1/models/churn:predict",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert answer["predictions"][0]["model_version"] == champion
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop_server(settings, "churn")


def test_candidate_asset_without_a_dataset_fails_readably(tmp_path, monkeypatch):
    from mlops_assets.defs.training import defs as training_defs
    from mlops_assets.defs.training.resources import TrainingResource

    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_DVC_ROOT", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = dg.materialize(
            list(training_defs.assets),
            selection=[dg.AssetKey(["models", "churn", "candidate"])],
            resources={"training": TrainingResource()},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    finally:
        get_settings.cache_clear()
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no DVC version of dataset churn_v1" in failure.step_failure_data.error.message


def test_prod_runner_needs_a_kfp_endpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_ENV", "prod")
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLOPS_KFP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(PipelineFailed, match="MLOPS_KFP_HOST is not set"):
            run_training(get_settings(), CONFIG, "abc.dir", LINEAGE)
    finally:
        get_settings.cache_clear()
