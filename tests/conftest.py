"""Shared fixtures. Service-backed tests skip with a reason when the service is absent, unless
CI=true, where a missing PostgreSQL or Redis fails the run instead."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlops_assets.settings import Settings, get_settings
from mlops_assets.world import World, save_world

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", int(os.environ.get("MLOPS_TEST_PG_PORT", "5432"))
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("MLOPS_TEST_REDIS_PORT", "6379"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true makes {name} tests mandatory")
    pytest.skip(message)


def small_world(customers: int, **changes) -> World:
    """A small world without drift unless asked (tests that want drift say from when)."""
    values = {"covariate_drift_from": None, "concept_drift_from": None, **changes}
    return World(n_customers=customers, **values)


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    import uuid

    import psycopg2

    admin = psycopg2.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user="postgres", dbname="postgres"
    )
    admin.autocommit = True
    name = f"mlops_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every setting at a private data folder and a small world."""
    data = tmp_path / "data"
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data))
    monkeypatch.delenv("MLOPS_LANDING_URI", raising=False)
    save_world(data, small_world(2000))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return get_settings()


@contextmanager
def scratch_world(root: Path, customers: int = 3000) -> Iterator[Settings]:
    """Settings pointing every path (data, DVC root) at `root`, for a module-scoped world (no
    drift, `customers` customers)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_DATA_DIR", str(root / "data"))
        mp.setenv("MLOPS_DVC_ROOT", str(root))
        mp.delenv("MLOPS_LANDING_URI", raising=False)
        save_world(root / "data", small_world(customers))
        get_settings.cache_clear()
        try:
            yield get_settings()
        finally:
            get_settings.cache_clear()


def init_dvc_repo(root: Path) -> None:
    """A git + DVC repo at `root` with the project's dvc.yaml, remotes and Feast repo (the
    stage's dependencies), so dataset versions never touch the project's dvc.lock."""
    import shutil
    import subprocess

    from dvc.repo import Repo

    from mlops_assets.settings import PROJECT_ROOT

    subprocess.run(["git", "init", "-q", str(root)], check=True)
    Repo.init(str(root))
    shutil.copy(PROJECT_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(PROJECT_ROOT / "feature_repo", root / "feature_repo")


def build_shop(
    settings: Settings, days: int, run_dbt_tests: bool = False, target_path: Path | None = None
):
    """Land `days` of the configured world, `dbt build` it on DuckDB and apply the Feast repo;
    returns the feature store. Used by the module fixtures of the slower suites."""
    import datetime as dt
    import subprocess

    from mlops_assets.datagen.landing import land_day
    from mlops_assets.defs.dbt.project import DBT_EXECUTABLE, DBT_PROJECT_DIR
    from mlops_assets.features.store import apply_feature_repo, feature_store

    world = settings.world()
    for i in range(days):
        land_day(world, settings.landing, world.start_date + dt.timedelta(days=i))
    settings.export_dbt_env()
    command = [DBT_EXECUTABLE, "build", "--target", "local"]
    if not run_dbt_tests:
        command += ["--exclude", "resource_type:test"]
    target = target_path or settings.data_dir / "dbt_target"
    proc = subprocess.run(
        command,
        cwd=DBT_PROJECT_DIR,
        env={
            **os.environ,
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(target / "logs"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    store = feature_store(settings)
    apply_feature_repo(store)
    return store


def register_quick_model(
    settings: Settings, dataset: Path, kind: str = "model", extra: str | None = None
) -> str:
    """Fit the churn config's estimator (or its baseline) on a built training set and register it
    in MLflow; `extra` adds a column the feature service does not serve. Returns the version."""
    from mlops_assets.model_config import model_configs
    from mlops_assets.training.estimators import (
        build_estimator,
        dataset_schema,
        feature_frame,
        read_split,
    )
    from mlops_assets.training.registry import log_and_register

    config = model_configs()["churn"]
    train = read_split(dataset, "train")
    X = feature_frame(train, dataset_schema(dataset)["features"])
    if extra:
        X = X.assign(**{extra: 1.0})
    model = build_estimator(config, X, kind=kind).fit(X, train[config.label])
    lineage = {
        "dvc_md5": "x.dir",
        "feature_service": config.feature_service,
        "git_commit": "0",
        "kfp_run_id": "k",
        "dagster_run_id": "d",
    }
    _, version = log_and_register(
        model, X.head(3), config, {"model": {"roc_auc": 0.9}}, lineage, settings
    )
    return version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
