"""DVC versioning with the project's own dvc.yaml and .dvc/config, in a scratch DVC repo: stable
hashes, a push/pull round trip, and a corrupted remote object caught on pull."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.datasets.versioning import (
    VersioningError,
    commit_and_push,
    current_version,
    datasets_dir,
    dvc_root,
    pull,
)
from mlops_assets.settings import PROJECT_ROOT, get_settings


def _write_dataset(folder: Path, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", 700), ("validation", 150), ("test", 150)):
        pd.DataFrame(
            {"customer_id": np.arange(n), "x": rng.random(n), "churned": rng.integers(0, 2, n)}
        ).to_parquet(folder / f"{split}.parquet", index=False)
    (folder / "schema.json").write_text('{"label": "churned"}\n')


def _write_gold(data: Path) -> None:
    """Stand-ins for the stage's gold dependencies."""
    gold = data / "gold"
    gold.mkdir(parents=True, exist_ok=True)
    for name in ("customer_features.parquet", "churn_labels.parquet"):
        pd.DataFrame({"customer_id": [1, 2], "v": [0.5, 1.5]}).to_parquet(gold / name, index=False)


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    from dvc.repo import Repo

    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    Repo.init(str(root))
    shutil.copy(PROJECT_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(PROJECT_ROOT / "feature_repo", root / "feature_repo")
    _write_gold(root / "data")
    monkeypatch.setenv("MLOPS_DVC_ROOT", str(root))
    monkeypatch.setenv("MLOPS_DATA_DIR", str(root / "data"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_project_config_verifies_pulls_and_keeps_caches_in_data():
    config = (PROJECT_ROOT / ".dvc" / "config").read_text()
    assert "verify = true" in config
    assert "dir = ../data/dvc/cache" in config
    assert "url = ../data/dvc/remote" in config
    # DVC reads a relative site_cache_dir from the working directory, not from .dvc/: the code
    # writes the data folder's absolute one to .dvc/config.local instead.
    assert "site_cache_dir" not in config


def test_same_inputs_same_hash(dvc_repo):
    folder = dvc_repo.datasets_dir / "churn_v1"
    _write_dataset(folder, seed=1)
    first = commit_and_push(dvc_repo, "churn_v1")
    shutil.rmtree(folder)
    _write_dataset(folder, seed=1)
    assert commit_and_push(dvc_repo, "churn_v1").md5 == first.md5
    _write_dataset(folder, seed=2)
    assert commit_and_push(dvc_repo, "churn_v1").md5 != first.md5
    assert first.md5.endswith(".dir") and first.files == 4
    # The caches and the local remote live in the data folder, not in system paths.
    data = dvc_repo.data_dir / "dvc"
    assert any((data / "cache").rglob("*")) and any((data / "remote").rglob("*"))
    assert first.remote == "local" and first.remote_url == str(data / "remote")
    local = (dvc_repo.dvc_root / ".dvc" / "config.local").read_text()
    assert f"site_cache_dir = {data / 'site'}" in local
    # An explicit MLOPS_DVC_ROOT is used as it is.
    assert dvc_root(dvc_repo) == dvc_repo.dvc_root and not (dvc_repo.data_dir / ".dvc").exists()


def test_push_pull_round_trip_restores_identical_files(dvc_repo, tmp_path):
    folder = dvc_repo.datasets_dir / "churn_v1"
    _write_dataset(folder, seed=5)
    original = {p.name: p.read_bytes() for p in folder.iterdir()}
    version = commit_and_push(dvc_repo, "churn_v1")
    # A new machine: no cache, no workspace copy; only the remote has it.
    shutil.rmtree(dvc_repo.data_dir / "dvc" / "cache")
    shutil.rmtree(folder)
    restored = pull(dvc_repo, version.md5, tmp_path / "restored")
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == original
    assert current_version(dvc_repo, "churn_v1").md5 == version.md5


def test_corrupted_remote_object_fails_the_pull(dvc_repo, tmp_path):
    folder = dvc_repo.datasets_dir / "churn_v1"
    _write_dataset(folder, seed=6)
    version = commit_and_push(dvc_repo, "churn_v1")
    remote = dvc_repo.data_dir / "dvc" / "remote"
    objects = sorted(p for p in remote.rglob("*") if p.is_file() and not p.name.endswith(".dir"))
    victim = max(objects, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-16] + b"corrupted-bytes!")
    shutil.rmtree(dvc_repo.data_dir / "dvc" / "cache")
    shutil.rmtree(folder)
    with pytest.raises(VersioningError, match="could not pull dataset"):
        pull(dvc_repo, version.md5, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()


def test_unknown_version_is_a_clear_error(dvc_repo, tmp_path):
    with pytest.raises(VersioningError, match="could not pull dataset 0123"):
        pull(dvc_repo, "0123456789abcdef0123456789abcdef", tmp_path / "nothing")


def test_another_data_folder_is_its_own_dvc_project(data_dir, tmp_path):
    """No MLOPS_DVC_ROOT: a data folder other than ./data gets a DVC project of its own, generated
    from the repository's dvc.yaml and .dvc/config; the repository's files are never used."""
    settings = get_settings()
    root = dvc_root(settings)
    assert root == data_dir.resolve() != PROJECT_ROOT
    _write_gold(data_dir)
    folder = datasets_dir(settings) / "churn_v1"
    assert folder == data_dir.resolve() / "datasets" / "churn_v1"
    _write_dataset(folder, seed=7)
    original = {p.name: p.read_bytes() for p in folder.iterdir()}
    version = commit_and_push(settings, "churn_v1")
    assert version.files == 4 and version.remote_url == str(data_dir.resolve() / "dvc" / "remote")
    assert commit_and_push(settings, "churn_v1").md5 == version.md5  # idempotent

    # The generated project: the repository's stage, paths resolved from the data folder.
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    stage = spec["stages"]["churn_v1_dataset"]
    assert stage["outs"] == ["datasets/churn_v1"]
    assert "gold/customer_features.parquet" in stage["deps"]
    assert str(PROJECT_ROOT / "feature_repo" / "feature_views.py") in stage["deps"]
    assert stage["cmd"].endswith("mlops dataset build --service churn_v1")
    assert f"MLOPS_DATA_DIR={root}" in stage["cmd"]
    config = (root / ".dvc" / "config").read_text()
    assert "dir = ../dvc/cache" in config and "url = ../dvc/remote" in config
    assert "verify = true" in config
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert lock["stages"]["churn_v1_dataset"]["outs"][0]["md5"] == version.md5

    # `mlops dataset pull <md5>` restores it from the data folder's remote.
    shutil.rmtree(data_dir / "dvc" / "cache")
    shutil.rmtree(folder)
    restored = pull(settings, version.md5, tmp_path / "restored")
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == original
