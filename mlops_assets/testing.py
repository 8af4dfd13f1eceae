"""Worlds for tests and benchmarks, built with the product's own code: a scratch data folder with a
small world (which is its own DVC project), a shop landed and built by dbt with the Feast repo
applied, a model registered in MLflow as a champion would be, free loopback ports; and, for
benchmarks at scale, synthetic gold tables and training sets. The tests' fixtures and the
benchmarks both use these, so a world is built one way."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.settings import Settings, get_settings
from mlops_assets.world import World, save_world

if TYPE_CHECKING:
    from feast import FeatureStore

    from mlops_assets.model_config import ModelConfig
    from mlops_assets.training.registry import Registry


def copy_project(dest: Path) -> Path:
    """The project's files as a fresh checkout has them (what git lists, tracked or not ignored,
    as they are in the working tree) copied into `dest`, for tests that change or run a copy."""
    import shutil

    from mlops_assets.settings import PROJECT_ROOT

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = PROJECT_ROOT / name
        if source.is_file():  # deleted in the working tree: not in a checkout either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def small_world(customers: int, **changes: Any) -> World:
    """A world without drift unless asked (tests that want drift say from when)."""
    values = {"covariate_drift_from": None, "concept_drift_from": None, **changes}
    return World(n_customers=customers, **values)


@contextlib.contextmanager
def scratch_settings(data_dir: Path, world: World) -> Iterator[Settings]:
    """The process's settings pointed at `data_dir` holding `world`, restored afterwards. (The data
    folder is configuration every process reads, the CLI's and Dagster's too.)"""
    from mlops_assets.processes import environment

    with environment({"MLOPS_DATA_DIR": str(data_dir), "MLOPS_LANDING_URI": None}):
        save_world(data_dir, world)
        _settings_changed()
        try:
            yield get_settings()
        finally:
            _settings_changed()


@contextlib.contextmanager
def scratch_world(root: Path, customers: int, **changes: Any) -> Iterator[tuple[Settings, Any]]:
    """A small world of `customers` in `root/data` (scratch_settings) and the environment's
    resources opened on it: (settings, resources)."""
    from mlops_assets.resources import open_resources

    world = small_world(customers, **changes)
    with scratch_settings(root / "data", world) as settings, open_resources(settings) as res:
        yield settings, res


def _settings_changed() -> None:
    """Forget what was built from the old settings: the settings themselves and the code
    location's definitions (their resources name the data folder), if they were loaded."""
    get_settings.cache_clear()
    definitions = sys.modules.get("mlops_assets.definitions")
    if definitions is not None:
        definitions.load.cache_clear()


def build_shop(settings: Settings, days: int, run_dbt_tests: bool = False) -> FeatureStore:
    """Land `days` of the data folder's world, `dbt build` it on DuckDB and apply the Feast repo;
    returns the embedded feature store."""
    from mlops_assets.datagen.landing import land_days
    from mlops_assets.defs.dbt.project import DBT_EXECUTABLE, DBT_PROJECT_DIR
    from mlops_assets.features.store import apply_feature_repo, embedded_store
    from mlops_assets.model_config import dbt_vars

    land_days(settings.world(), settings.landing, days)
    settings.export_dbt_env()
    command = [DBT_EXECUTABLE, "build", "--target", "local", "--vars", dbt_vars()]
    if not run_dbt_tests:
        command += ["--exclude", "resource_type:test"]
    target = settings.data_dir / "dbt_target"
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
    if proc.returncode:
        raise RuntimeError(f"dbt build failed:\n{proc.stdout[-3000:]}")
    store = embedded_store(settings.data_dir)
    apply_feature_repo(store)
    return store


def materialize_all(store: FeatureStore, settings: Settings, days: int) -> None:
    """The online store loaded with the first `days` of the world."""
    from mlops_assets.features.store import materialize_window

    start = dt.datetime.combine(settings.world().start_date, dt.time(), tzinfo=dt.UTC)
    materialize_window(store, start, start + dt.timedelta(days=days))


def register_quick_model(
    registry: Registry,
    config: ModelConfig,
    dataset: Path,
    kind: str = "model",
    extra: str | None = None,
    dvc_md5: str = "x.dir",
) -> str:
    """Fit the config's estimator (or its baseline) on a built training set and register it in
    MLflow, with lineage tags; `extra` adds a column the feature service does not serve.
    Returns the version."""
    from mlops_assets.training.estimators import (
        build_estimator,
        dataset_schema,
        feature_frame,
        read_split,
    )
    from mlops_assets.training.registry import log_and_register

    train = read_split(dataset, "train")
    X = feature_frame(train, dataset_schema(dataset)["features"])
    if extra:
        X = X.assign(**{extra: 1.0})
    model = build_estimator(config, X, kind=kind).fit(X, train[config.label])
    lineage = {
        "dvc_md5": dvc_md5,
        "feature_service": config.feature_service,
        "git_commit": "0",
        "kfp_run_id": "k",
        "dagster_run_id": "d",
    }
    metrics = {"model": {"roc_auc": 0.9}}
    _, version = log_and_register(registry, model, X.head(3), config, metrics, lineage)
    return version


def register_quick_champion(
    registry: Registry, config: ModelConfig, dataset: Path, actor: str = "test"
) -> str:
    """`register_quick_model` for any config, made champion: a config whose decision threshold is
    `auto` (fraud) gets the cost-minimizing one chosen on the validation split stored on the
    estimator, as training does, so the version can serve. Returns the version."""
    from mlops_assets.training.decisions import set_alias
    from mlops_assets.training.estimators import (
        build_estimator,
        dataset_schema,
        feature_frame,
        read_split,
    )
    from mlops_assets.training.registry import CHAMPION, log_and_register
    from mlops_assets.training.thresholds import THRESHOLD_ATTRIBUTE, choose_threshold

    features = dataset_schema(dataset)["features"]
    train, validation = read_split(dataset, "train"), read_split(dataset, "validation")
    X = feature_frame(train, features)
    model = build_estimator(config, X).fit(X, train[config.label])
    scores = model.predict_proba(feature_frame(validation, features))[:, 1]
    threshold = choose_threshold(config, validation[config.label].to_numpy(), scores)
    setattr(model, THRESHOLD_ATTRIBUTE, threshold)
    lineage = {
        "dvc_md5": "x.dir",
        "feature_service": config.feature_service,
        "git_commit": "0",
        "kfp_run_id": "k",
        "dagster_run_id": "d",
    }
    metrics = {"model": {"roc_auc": 0.9}}
    _, version = log_and_register(registry, model, X.head(3), config, metrics, lineage)
    set_alias(registry, config.registered_model, CHAMPION, version, actor=actor, reason="quick")
    return version


def online_rows(path: str | Path) -> list[tuple]:
    """Every row of a SQLite online store file, table by table in key order: what to compare
    when two write paths must leave the same store."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        rows = []
        for table in sorted(tables):
            rows += [(table, *r) for r in con.execute(f'select * from "{table}" order by 1, 2')]
        return rows
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_offset() -> int:
    """An offset that moves every port of a SeaweedFS node (`Settings.services_port_offset`) onto
    free loopback ports, so a test's node never meets a running one."""
    import random

    from mlops_assets.services import SeaweedPorts

    for offset in random.sample(range(1000, 30000), 200):
        if all(_port_free(port) for port in SeaweedPorts().shifted(offset).all()):
            return offset
    raise RuntimeError("no free range of ports for a SeaweedFS node")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- synthetic worlds, for benchmarks at scale ----------------------------------------------------

SYNTHETIC_LAST = dt.date(2025, 8, 27)  # the newest snapshot of the synthetic gold table


def synthetic_gold_table(n: int, snapshots: int, path: Path) -> None:
    """A gold.customer_features-shaped table: `n` customers, `snapshots` weekly snapshots back
    from SYNTHETIC_LAST, values drawn at random (for benchmarks at scales dbt would take long to
    build)."""
    import numpy as np
    import pandas as pd

    last = pd.Timestamp(SYNTHETIC_LAST)
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(1, n + 1, dtype=np.int64), snapshots)
    ts = np.repeat([last - pd.Timedelta(days=7 * k) for k in range(snapshots)], n)
    m = len(ids)
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": ts,
            "country_code": rng.choice(["US", "GB", "DE", "VN", "BR"], m),
            "acquisition_channel": rng.choice(["organic", "paid_search", "social", "referral"], m),
            "plan": rng.choice(["free", "basic", "premium"], m),
            "tenure_days": rng.integers(0, 700, m),
            "age_years": rng.integers(18, 80, m),
            "lifetime_value_usd": rng.random(m) * 900,
            "order_count_lifetime": rng.integers(1, 60, m),
            "order_count_30d": rng.integers(0, 6, m),
            "order_count_90d": rng.integers(1, 15, m),
            "spend_30d_usd": rng.random(m) * 120,
            "spend_90d_usd": rng.random(m) * 360,
            "avg_order_value_90d_usd": rng.random(m) * 70,
            "discount_order_share_90d": rng.random(m),
            "avg_discount_pct_90d": rng.random(m) * 25,
            "return_share_90d": rng.random(m) * 0.2,
            "days_since_last_order": rng.integers(0, 90, m),
            "ticket_count_30d": rng.integers(0, 3, m),
            "ticket_count_90d": rng.integers(0, 6, m),
            "open_ticket_count": rng.integers(0, 2, m),
            "high_priority_ticket_count_90d": rng.integers(0, 2, m),
            "segment": rng.choice(["new", "at_risk", "champion", "loyal", "regular"], m),
        }
    )
    frame["last_order_at"] = frame["event_timestamp"] - pd.to_timedelta(
        frame["days_since_last_order"] * 86400 + 3600, unit="s"
    )
    frame["created_timestamp"] = frame["event_timestamp"]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def synthetic_training_set(folder: Path, rows: int, seed: int = 0) -> None:
    """A built training set (splits and schema.json) in the churn feature service's shape, with
    a label drawn from a logistic model of a few features."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(1, 10**6, rows),
            "event_timestamp": pd.Timestamp("2025-03-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 150, rows)), unit="D"),
            "country_code": rng.choice(["US", "GB", "DE", "VN", "BR"], rows),
            "acquisition_channel": rng.choice(
                ["organic", "paid_search", "social", "referral"], rows
            ),
            "plan": rng.choice(["free", "basic", "premium"], rows),
            "tenure_days": rng.integers(0, 700, rows),
            "age_years": rng.integers(18, 80, rows),
            "segment": rng.choice(["new", "at_risk", "champion", "loyal", "regular"], rows),
            "lifetime_value_usd": rng.gamma(2, 150, rows),
            "order_count_lifetime": rng.integers(1, 60, rows),
            "order_count_30d": rng.poisson(1.5, rows),
            "order_count_90d": rng.poisson(4, rows),
            "spend_30d_usd": rng.gamma(2, 30, rows),
            "spend_90d_usd": rng.gamma(2, 90, rows),
            "avg_order_value_90d_usd": rng.gamma(4, 10, rows),
            "discount_order_share_90d": rng.random(rows),
            "avg_discount_pct_90d": rng.random(rows) * 25,
            "return_share_90d": rng.random(rows) * 0.2,
            "days_since_last_order": rng.integers(0, 90, rows),
            "last_order_at": pd.Timestamp("2025-03-01"),
            "ticket_count_30d": rng.poisson(0.3, rows),
            "ticket_count_90d": rng.poisson(0.8, rows),
            "open_ticket_count": rng.poisson(0.1, rows),
            "high_priority_ticket_count_90d": rng.poisson(0.1, rows),
        }
    )
    frame["days_since_last_order_now"] = frame["days_since_last_order"] + rng.random(rows) * 7
    logit = (
        -1.0
        + 0.04 * frame["days_since_last_order"]
        - 0.5 * frame["order_count_30d"]
        + 0.6 * frame["ticket_count_30d"]
        + 1.2 * frame["discount_order_share_90d"]
        - 0.4 * (frame["plan"] == "premium")
    )
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int32")
    _write_time_splits(frame, folder)


def _write_time_splits(frame: Any, folder: Path) -> None:
    """70/15/15 by event time, as build_training_set splits, with its schema.json."""
    import json

    import numpy as np

    features = [c for c in frame.columns if c not in ("customer_id", "event_timestamp", "churned")]
    times = np.sort(frame["event_timestamp"].unique())
    cut1, cut2 = times[int(len(times) * 0.7)], times[int(len(times) * 0.85)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in (
        ("train", frame["event_timestamp"] < cut1),
        ("validation", (frame["event_timestamp"] >= cut1) & (frame["event_timestamp"] < cut2)),
        ("test", frame["event_timestamp"] >= cut2),
    ):
        frame[mask].to_parquet(folder / f"{name}.parquet", index=False)
    schema = {
        "entity": "customer_id",
        "timestamp": "event_timestamp",
        "label": "churned",
        "features": features,
    }
    (folder / "schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")


def register_synthetic_champion(
    registry: Registry, config: ModelConfig, folder: Path, rows: int = 50_000
) -> tuple[str, Any]:
    """Fit the config's estimator on a synthetic training set of `rows` rows in `folder`,
    register it and make it champion; returns (version, model)."""
    from mlops_assets.training.decisions import set_alias
    from mlops_assets.training.registry import CHAMPION, load_model

    synthetic_training_set(folder, rows)
    version = register_quick_model(registry, config, folder, dvc_md5="bench")
    set_alias(
        registry, config.registered_model, CHAMPION, version, actor="bench", reason="benchmark"
    )
    return version, load_model(registry, config.registered_model, version)
