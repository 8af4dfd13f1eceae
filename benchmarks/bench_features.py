"""Feature store benchmarks: online materialization, point-in-time training sets, online lookups.

    .venv/bin/python benchmarks/bench_features.py                    # 1M customers (defaults)
    .venv/bin/python benchmarks/bench_features.py --customers 200000 --redis-customers 20000

A gold-shaped feature table (same schema as dbt's gold.customer_features, `--snapshots` weekly
snapshots per customer, values drawn at random) is written under benchmarks/results/ (git-ignored)
and the project's own Feast repo is applied to it. Measured:
- bulk materialization of every customer's latest snapshot into the embedded SQLite online store
  (the path the Dagster asset uses), and Feast's own `materialize` into the same store on a subset;
- a point-in-time training set of `--labels` label rows through `build_training_set`;
- one-customer online lookups, p50/p99 over `--lookups` calls: the project's reader and the Feast
  SDK, on SQLite, and on Redis (127.0.0.1:6379) when it is running.
Results are printed and appended to benchmarks/results/features.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from serving_harness import bulk_materialize_service

from mlops_assets.testing import SYNTHETIC_LAST, synthetic_gold_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
warnings.filterwarnings("ignore")


LAST = pd.Timestamp(SYNTHETIC_LAST)


def _churn_config():
    from mlops_assets.model_config import model_configs

    return model_configs()["churn"]


CONFIG = _churn_config()  # its labels and feature service


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


def time_lookups(fn, ids: np.ndarray, n: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    for cid in rng.choice(ids, 200):  # warm up
        fn(int(cid))
    samples = []
    for cid in rng.choice(ids, n):
        started = time.perf_counter()
        fn(int(cid))
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def point_data_at(folder: Path):
    """A fresh data folder, made the process's; returns its settings."""
    from mlops_assets.settings import get_settings

    shutil.rmtree(folder, ignore_errors=True)
    os.environ["MLOPS_DATA_DIR"] = str(folder)
    get_settings.cache_clear()
    return get_settings()


def window() -> tuple[dt.datetime, dt.datetime]:
    start = (LAST - pd.Timedelta(days=1)).to_pydatetime().replace(tzinfo=dt.UTC)
    end = (LAST + pd.Timedelta(days=1)).to_pydatetime().replace(tzinfo=dt.UTC)
    return start, end


def applied_store(customers: int, snapshots: int, folder: Path):
    """The project's Feast repo, applied to a gold table of `customers` in its own data folder."""
    from mlops_assets.features.store import apply_feature_repo, embedded_store

    settings = point_data_at(folder)
    synthetic_gold_table(customers, snapshots, settings.gold_dir / "customer_features.parquet")
    store = embedded_store(settings.data_dir)
    apply_feature_repo(store)
    return store


def churn_views(store) -> list[str]:
    """The views of churn's feature service (the synthetic gold table feeds only these; fraud's
    order views read a table this benchmark does not write)."""
    service = store.get_feature_service(CONFIG.feature_service)
    return [p.name for p in service.feature_view_projections if p.name in stored_views(store)]


def stored_views(store) -> set[str]:
    return {v.name for v in store.list_feature_views()}


def bulk_figures(args, store) -> dict:
    started = time.perf_counter()
    written = bulk_materialize_service(store, CONFIG.feature_service, *window())
    seconds = round(time.perf_counter() - started, 2)
    print(
        f"bulk materialize {args.customers:,} customers x 3 views into SQLite: {seconds}s {written}"
    )
    return {"bulk_materialize_s": seconds}


def feast_subset_figures(args, folder: Path) -> dict:
    """Feast's own materialize and the bulk path into the same store, on a subset (both are
    linear in rows)."""
    store = applied_store(args.feast_customers, 1, folder)
    started = time.perf_counter()
    store.materialize(*window(), feature_views=churn_views(store))
    feast_s = time.perf_counter() - started
    started = time.perf_counter()
    bulk_materialize_service(store, CONFIG.feature_service, *window())
    bulk_s = time.perf_counter() - started
    print(
        f"same store, {args.feast_customers:,} customers: Feast materialize {feast_s:.1f}s, "
        f"bulk {bulk_s:.2f}s ({feast_s / bulk_s:.0f}x)"
    )
    return {
        "feast_materialize_subset_s": round(feast_s, 2),
        "bulk_materialize_subset_s": round(bulk_s, 2),
    }


def training_set_figures(args, store, out: Path) -> dict:
    """A point-in-time training set: labels on every snapshot but the newest."""
    from mlops_assets.datasets.training_set import Labels, build_training_set

    rng = np.random.default_rng(2)
    pairs = args.customers * (args.snapshots - 1)
    pick = rng.choice(pairs, size=min(args.labels, pairs), replace=False)
    weeks_back = pd.to_timedelta(7 * (pick // args.customers + 1), unit="D")
    labels = pd.DataFrame(
        {
            "customer_id": (pick % args.customers + 1).astype(np.int64),
            "event_timestamp": (LAST - weeks_back).tz_localize("UTC") + pd.Timedelta(hours=12),
            "churned": rng.integers(0, 2, len(pick)),
        }
    )
    started = time.perf_counter()
    summary = build_training_set(store, Labels.of(CONFIG), labels, out)
    seconds = round(time.perf_counter() - started, 2)
    rows = sum(summary.rows.values())
    print(f"point-in-time training set, {rows:,} rows: {seconds}s")
    return {"training_set_s": seconds, "training_set_rows": rows}


def lookup_figures(store, customers: int, lookups: int) -> dict:
    """One-customer online lookups: the project's reader and the Feast SDK."""
    from mlops_assets.features.online import OnlineFeatureReader

    ids = np.arange(1, customers + 1)
    now = window()[1]
    reader = OnlineFeatureReader(store, CONFIG.feature_service)
    service = store.get_feature_service(CONFIG.feature_service)
    return {
        "reader": time_lookups(lambda c: reader.read([c], now), ids, lookups),
        "feast_sdk": time_lookups(
            lambda c: store.get_online_features(
                features=service, entity_rows=[{"customer_id": c, "request_ts": now}]
            ).to_dict(),
            ids,
            min(lookups, 2000),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=4)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument(
        "--feast-customers", type=int, default=100_000, help="subset for Feast's own materialize"
    )
    parser.add_argument("--redis-customers", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=5000)
    args = parser.parse_args()

    data, sub = RESULTS / "features_data", RESULTS / "features_feast_subset"
    report: dict = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **vars(args)}
    store = applied_store(args.customers, args.snapshots, data)
    report |= bulk_figures(args, store)
    report |= feast_subset_figures(args, sub)
    store = applied_store_again(data)
    report |= training_set_figures(args, store, data / "dataset")
    sqlite = lookup_figures(store, args.customers, args.lookups)
    report["sqlite_reader"], report["sqlite_feast_sdk"] = sqlite["reader"], sqlite["feast_sdk"]
    print(f"SQLite lookup, project reader: {sqlite['reader']}; Feast SDK: {sqlite['feast_sdk']}")
    report["redis"] = redis_figures(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "features.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(sub, ignore_errors=True)


def applied_store_again(folder: Path):
    """The store of a data folder filled earlier, made the process's again."""
    from mlops_assets.features.store import embedded_store
    from mlops_assets.settings import get_settings

    os.environ["MLOPS_DATA_DIR"] = str(folder)
    get_settings.cache_clear()
    return embedded_store(get_settings().data_dir)


def redis_figures(args) -> dict | str:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        print("Redis not reachable on 127.0.0.1:6379: skipped")
        return "skipped: Redis not reachable"
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from mlops_assets.features.store import FEATURE_REPO, apply_feature_repo

    sub = RESULTS / "features_redis"
    settings = point_data_at(sub)
    synthetic_gold_table(args.redis_customers, 1, settings.gold_dir / "customer_features.parquet")
    store = FeatureStore(
        config=RepoConfig(
            project=f"bench_{uuid.uuid4().hex[:8]}",
            provider="local",
            registry={"registry_type": "file", "path": str(sub / "registry.db")},
            online_store={"type": "redis", "connection_string": "127.0.0.1:6379"},
            offline_store={"type": "duckdb"},
            entity_key_serialization_version=3,
            repo_path=FEATURE_REPO,
        )
    )
    apply_feature_repo(store)
    try:
        started = time.perf_counter()
        store.materialize(*window(), feature_views=churn_views(store))
        materialize_s = time.perf_counter() - started
        out = {
            "customers": args.redis_customers,
            "feast_materialize_s": round(materialize_s, 2),
            **lookup_figures(store, args.redis_customers, args.lookups),
        }
        print(
            f"Redis: Feast materialize {args.redis_customers:,} customers {materialize_s:.1f}s; lookup reader {out['reader']}, SDK {out['feast_sdk']}"
        )
        return out
    finally:
        store.teardown()
        shutil.rmtree(sub, ignore_errors=True)


if __name__ == "__main__":
    main()
