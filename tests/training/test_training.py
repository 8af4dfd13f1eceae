"""Training on a real kfp.local pipeline with a real MLflow registry, over a DVC-versioned dataset
built from a small generated shop; the promotion gate and its decision log."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
from mlops_assets.datasets.versioning import commit_and_push
from mlops_assets.model_config import model_configs
from mlops_assets.pipelines.runner import PipelineFailed
from mlops_assets.testing import build_shop, scratch_world
from mlops_assets.training.decisions import champion_at, history
from mlops_assets.training.gate import gate
from mlops_assets.training.registry import (
    CHALLENGER,
    CHAMPION,
    ENV_VARS,
    LINEAGE_TAGS,
    alias_version,
    client,
)

pytestmark = pytest.mark.slow
CONFIG = model_configs()["churn"]
LINEAGE = {"git_commit": "0" * 40, "dagster_run_id": "test-run"}


@dataclass
class World:
    settings: Any
    resources: Any
    good: str  # the DVC version of the built dataset

    @property
    def registry(self):
        return self.resources.model_registry.registry()

    def train(self, md5: str, lineage: dict[str, str] = LINEAGE):
        """The environment's pipeline runner (kfp.local here) on dataset version `md5`."""
        return self.resources.pipeline_runner.run(CONFIG, md5, lineage, self.registry)

    def gate(self, version: str):
        return gate(self.registry, self.settings, CONFIG, version, actor="test")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The churn_v1 dataset of a 3000-customer shop, versioned in the data folder's own DVC
    project; MLflow on SQLite."""
    root = tmp_path_factory.mktemp("training")
    with scratch_world(root, 3000) as (settings, res):
        store = build_shop(settings, days=150)
        labels = Labels.of(CONFIG)
        build_training_set(
            store, labels, load_labels(res.warehouse, labels), settings.datasets_dir / "churn_v1"
        )
        good = commit_and_push(settings, "churn_v1").md5
        yield World(settings, res, good)


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


def _versions(registry) -> list[str]:
    return sorted(
        v.version
        for v in client(registry).search_model_versions(f"name = '{CONFIG.registered_model}'")
    )


def _assert_lineage_tuning_and_signature(mlflow_client, first, good: str) -> None:
    """The trained run `first` and its registered version: lineage, tuning, metrics, signature."""
    # Every lineage tag, on the run and on the registered version.
    version = mlflow_client.get_model_version(CONFIG.registered_model, first.model_version)
    for tags in (version.tags, mlflow_client.get_run(first.mlflow_run_id).data.tags):
        assert set(LINEAGE_TAGS) <= set(tags)
        assert tags["dvc_md5"] == good and tags["feature_service"] == "churn_v1"
        assert tags["kfp_run_id"] == first.kfp_run_id and tags["dagster_run_id"] == "test-run"
    run = mlflow_client.get_run(first.mlflow_run_id)
    # The tuning grid was searched and the registry records the winner's settings, including
    # the number of rounds early stopping chose on the validation split (what the refit used).
    trials = mlflow.artifacts.load_dict(f"runs:/{first.mlflow_run_id}/tuning.json")
    assert len(trials) == 6
    best = max(trials, key=lambda t: t["validation_roc_auc"])["params"]
    assert 1 <= best["max_iter"] <= CONFIG.params.max_iter and not best["early_stopping"]
    assert run.data.params["param_max_iter"] == str(best["max_iter"])
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


def _assert_the_log_answers_who_served_when(registry, champion: str) -> None:
    """The decision log of the pipeline test: gate and alias events, and the champion over time."""
    events = history(registry, CONFIG.registered_model)
    assert [(e["event"], e["outcome"]) for e in events] == [
        ("gate", "champion"),
        ("alias", "champion"),
        ("gate", "rejected"),
        ("gate", "challenger"),
        ("alias", "challenger"),
    ]
    assert champion_at(registry, CONFIG.registered_model, dt.datetime.now(dt.UTC)) == champion
    assert (
        champion_at(registry, CONFIG.registered_model, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        is None
    )


def test_pipeline_trains_registers_and_the_gate_moves_aliases(world):
    settings, good, registry = world.settings, world.good, world.registry
    registry_variables = ENV_VARS.values()  # how the steps find the registry
    environment_before = {name: os.environ.get(name) for name in registry_variables}
    first = world.train(good)
    # The steps got the registry through the environment; this process keeps none of it (a
    # later run or demo in the same process must not inherit this run's registry).
    assert {name: os.environ.get(name) for name in registry_variables} == environment_before
    assert first.metrics["model"]["roc_auc"] > 0.75
    assert first.metrics["model"]["roc_auc"] >= first.metrics["baseline"]["roc_auc"] - 0.02

    mlflow_client = client(registry)
    _assert_lineage_tuning_and_signature(mlflow_client, first, good)

    decision = world.gate(first.model_version)
    assert decision.outcome == CHAMPION
    assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == first.model_version

    # A model trained on shuffled labels is blocked and moves nothing.
    rng = np.random.default_rng(0)
    shuffled = _variant(
        settings, "shuffled", lambda f: f.assign(churned=rng.permutation(f["churned"].to_numpy()))
    )
    bad = world.train(shuffled)
    bad_decision = world.gate(bad.model_version)
    assert bad_decision.outcome == "rejected"
    assert "ROC AUC" in "; ".join(bad_decision.reasons)
    assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == first.model_version
    assert alias_version(mlflow_client, CONFIG.registered_model, CHALLENGER) is None

    # A second good model becomes challenger; the champion stays.
    _restore(settings, good)
    second = world.train(good)
    second_decision = world.gate(second.model_version)
    assert second_decision.outcome == CHALLENGER
    assert second_decision.champion_roc_auc_on_holdout is not None
    assert alias_version(mlflow_client, CONFIG.registered_model, CHALLENGER) == second.model_version
    assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == first.model_version

    _assert_the_log_answers_who_served_when(registry, first.model_version)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_version", "could not pull dataset"),
        ("one_class", "single label class"),
        ("missing_feature", "lacks features the service needs"),
    ],
)
def test_bad_training_input_fails_and_leaves_the_registry_alone(world, case, message):
    settings, good, registry = world.settings, world.good, world.registry
    before = _versions(registry)
    champion = alias_version(client(registry), CONFIG.registered_model, CHAMPION)
    if case == "unknown_version":
        md5 = "0123456789abcdef0123456789abcdef.dir"
    elif case == "one_class":
        md5 = _variant(settings, case, lambda f: f.assign(churned=0))
    else:
        md5 = _variant(settings, case, lambda f: f.drop(columns=["order_count_30d"]))
    try:
        with pytest.raises(PipelineFailed) as err:
            world.train(md5)
        assert message in str(err.value)
    finally:
        _restore(settings, good)
    assert _versions(registry) == before
    assert alias_version(client(registry), CONFIG.registered_model, CHAMPION) == champion


def _start_retraining(md5: str) -> subprocess.Popen:
    """A retraining in its own process (and process group), with the environment's resources
    (the data folder's)."""
    script = (
        "from mlops_assets.model_config import model_configs;"
        "from mlops_assets.resources import open_resources\n"
        "with open_resources() as res:\n"
        f"    res.pipeline_runner.run(model_configs()[{CONFIG.name!r}], {md5!r}, {{}},"
        " res.model_registry.registry())"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for_the_training_step(outputs: Path, seen: set[Path]) -> None:
    """Until a new KFP run under `outputs` has started its training step (fails after 900 s)."""
    deadline = time.monotonic() + 900  # generous: a loaded machine is slow, not wrong
    while time.monotonic() < deadline:  # kill once the training step has started
        runs = set(outputs.glob("*")) - seen
        if any((run / "train-model").exists() for run in runs):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the retraining never reached its training step")


def _predict(port: int, customer: int) -> dict:
    """The V1 answer of the model server on `port` for one customer."""
    body = json.dumps({"instances": [{"customer_id": customer}]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/{CONFIG.name}:predict",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_a_killed_retraining_leaves_the_champion_serving(world):
    """SIGKILL a retraining in the middle of its KFP pipeline: no alias moves and the deployed
    champion keeps answering."""
    from mlops_assets.serving.rollout import deploy
    from mlops_assets.testing import free_port, materialize_all

    settings, good, registry = world.settings, world.good, world.registry
    deployer = world.resources.deployer
    mlflow_client = client(registry)
    champion = alias_version(mlflow_client, CONFIG.registered_model, CHAMPION)
    challenger = alias_version(mlflow_client, CONFIG.registered_model, CHALLENGER)
    assert champion is not None  # from the pipeline test above
    materialize_all(world.resources.feature_store.store(), settings, 150)
    serving = CONFIG.serving.model_copy(update={"port": free_port(), "canary_percent": 0})
    config = CONFIG.model_copy(update={"serving": serving})
    deploy(registry, deployer, config, actor="test", reason="serve before the retraining")
    versions_before = _versions(registry)
    outputs = settings.data_dir / "kfp" / "outputs"
    seen = set(outputs.glob("*")) if outputs.exists() else set()
    proc = _start_retraining(good)
    try:
        _wait_for_the_training_step(outputs, seen)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert alias_version(mlflow_client, CONFIG.registered_model, CHAMPION) == champion
        assert alias_version(mlflow_client, CONFIG.registered_model, CHALLENGER) == challenger
        assert _versions(registry) == versions_before
        gold = pd.read_parquet(settings.gold_dir / "customer_features.parquet")
        customer = int(gold["customer_id"].iloc[-1])
        answer = _predict(serving.port, customer)
        assert answer["predictions"][0]["model_version"] == champion
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        deployer.stop(CONFIG.name)


def test_candidate_asset_without_a_dataset_fails_readably(settings):
    from mlops_assets.defs.training.assets import build_candidate, build_promotion
    from mlops_assets.resources import resources_for

    result = dg.materialize(
        [build_candidate(CONFIG), build_promotion(CONFIG)],
        selection=[dg.AssetKey(["models", CONFIG.name, "candidate"])],
        resources=resources_for(settings.env, settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no DVC version of dataset churn_v1" in failure.step_failure_data.error.message


def test_prod_runner_needs_a_kfp_endpoint(settings, monkeypatch):
    from mlops_assets.resources import KfpClusterRunner, ModelRegistryResource, resources_for
    from mlops_assets.settings import Environment

    monkeypatch.delenv("MLOPS_KFP_HOST", raising=False)
    # The prod resource set refuses to start a run without the endpoint, naming the variable.
    runner = resources_for(Environment.PROD, settings)["pipeline_runner"]
    assert isinstance(runner, KfpClusterRunner)
    with (
        pytest.raises(dg.DagsterInvalidConfigError, match='"MLOPS_KFP_HOST" which is not set'),
        dg.build_resources({"pipeline_runner": runner}),
    ):
        pass
    # ... and the runner itself refuses an empty endpoint before submitting anything.
    registry = ModelRegistryResource(
        tracking_uri="sqlite:///unused.db",
        artifact_root="file:///unused",
        decisions_url="sqlite://",
    ).registry()
    with pytest.raises(PipelineFailed, match="MLOPS_KFP_HOST"):
        KfpClusterRunner(host="").run(CONFIG, "abc.dir", LINEAGE, registry)
