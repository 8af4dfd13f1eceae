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
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
LAST = pd.Timestamp("2025-08-27")


def gold_table(n: int, snapshots: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(1, n + 1, dtype=np.int64), snapshots)
    ts = np.repeat([LAST - pd.Timedelta(days=7 * k) for k in range(snapshots)], n)
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

    data = RESULTS / "features_data"
    shutil.rmtree(data, ignore_errors=True)
    os.environ["MLOPS_DATA_DIR"] = str(data)
    from mlops_assets.datasets.training_set import build_training_set
    from mlops_assets.features.bulk import bulk_materialize
    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.features.store import apply_feature_repo, feature_store
    from mlops_assets.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    report: dict = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **vars(args)}
    gold_table(args.customers, args.snapshots, settings.gold_dir / "customer_features.parquet")

    store = feature_store(settings)
    apply_feature_repo(store)
    start = (LAST - pd.Timedelta(days=1)).to_pydatetime().replace(tzinfo=dt.UTC)
    end = (LAST + pd.Timedelta(days=1)).to_pydatetime().replace(tzinfo=dt.UTC)

    started = time.perf_counter()
    written = bulk_materialize(store, start, end)
    report["bulk_materialize_s"] = round(time.perf_counter() - started, 2)
    print(
        f"bulk materialize {args.customers:,} customers x 3 views into SQLite: {report['bulk_materialize_s']}s {written}"
    )

    # Feast's own path into the same store, on a subset (it is linear in rows).
    sub = RESULTS / "features_feast_subset"
    shutil.rmtree(sub, ignore_errors=True)
    os.environ["MLOPS_DATA_DIR"] = str(sub)
    get_settings.cache_clear()
    sub_settings = get_settings()
    gold_table(args.feast_customers, 1, sub_settings.gold_dir / "customer_features.parquet")
    sub_store = feature_store(sub_settings)
    apply_feature_repo(sub_store)
    started = time.perf_counter()
    sub_store.materialize(start, end)
    feast_s = time.perf_counter() - started
    started = time.perf_counter()
    bulk_materialize(sub_store, start, end)
    bulk_sub_s = time.perf_counter() - started
    report["feast_materialize_subset_s"] = round(feast_s, 2)
    report["bulk_materialize_subset_s"] = round(bulk_sub_s, 2)
    print(
        f"same store, {args.feast_customers:,} customers: Feast materialize {feast_s:.1f}s, "
        f"bulk {bulk_sub_s:.2f}s ({feast_s / bulk_sub_s:.0f}x)"
    )
    os.environ["MLOPS_DATA_DIR"] = str(data)
    get_settings.cache_clear()
    settings = get_settings()
    store = feature_store(settings)

    # Point-in-time training set: labels on every snapshot but the newest.
    rng = np.random.default_rng(2)
    pairs = args.customers * (args.snapshots - 1)
    pick = rng.choice(pairs, size=min(args.labels, pairs), replace=False)
    labels = pd.DataFrame(
        {
            "customer_id": (pick % args.customers + 1).astype(np.int64),
            "event_timestamp": (
                LAST - pd.to_timedelta(7 * (pick // args.customers + 1), unit="D")
            ).tz_localize("UTC")
            + pd.Timedelta(hours=12),
            "churned": rng.integers(0, 2, len(pick)),
        }
    )
    started = time.perf_counter()
    summary = build_training_set(store, "churn_v1", labels, data / "dataset")
    report["training_set_s"] = round(time.perf_counter() - started, 2)
    report["training_set_rows"] = sum(summary.rows.values())
    print(
        f"point-in-time training set, {report['training_set_rows']:,} rows: {report['training_set_s']}s"
    )

    # Online lookups, one customer per call.
    ids = np.arange(1, args.customers + 1)
    now = end
    reader = OnlineFeatureReader(store, "churn_v1")
    service = store.get_feature_service("churn_v1")
    report["sqlite_reader"] = time_lookups(lambda c: reader.read([c], now), ids, args.lookups)
    report["sqlite_feast_sdk"] = time_lookups(
        lambda c: store.get_online_features(
            features=service, entity_rows=[{"customer_id": c, "request_ts": now}]
        ).to_dict(),
        ids,
        min(args.lookups, 2000),
    )
    print(
        f"SQLite lookup, project reader: {report['sqlite_reader']}; Feast SDK: {report['sqlite_feast_sdk']}"
    )

    report["redis"] = redis_figures(args, settings, start, end, now)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "features.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(sub, ignore_errors=True)


def redis_figures(args, settings, start, end, now) -> dict | str:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        print("Redis not reachable on 127.0.0.1:6379: skipped")
        return "skipped: Redis not reachable"
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from mlops_assets.features.online import OnlineFeatureReader
    from mlops_assets.features.store import FEATURE_REPO, apply_feature_repo

    sub = RESULTS / "features_redis"
    shutil.rmtree(sub, ignore_errors=True)
    os.environ["MLOPS_DATA_DIR"] = str(sub)
    from mlops_assets.settings import get_settings

    get_settings.cache_clear()
    gold_table(args.redis_customers, 1, get_settings().gold_dir / "customer_features.parquet")
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
        store.materialize(start, end)
        materialize_s = time.perf_counter() - started
        reader = OnlineFeatureReader(store, "churn_v1")
        service = store.get_feature_service("churn_v1")
        ids = np.arange(1, args.redis_customers + 1)
        out = {
            "customers": args.redis_customers,
            "feast_materialize_s": round(materialize_s, 2),
            "reader": time_lookups(lambda c: reader.read([c], now), ids, args.lookups),
            "feast_sdk": time_lookups(
                lambda c: store.get_online_features(
                    features=service, entity_rows=[{"customer_id": c, "request_ts": now}]
                ).to_dict(),
                ids,
                min(args.lookups, 2000),
            ),
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
