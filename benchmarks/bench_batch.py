"""Batch scoring benchmark: one day's predictions for N customers, scored by the MLflow champion
and committed to the Iceberg table (pyiceberg SQL catalog), end to end as the Dagster asset does it
(`score_days` over the day: offline features, model, label engine, one Iceberg overwrite of the
day), with the environment's resources (the Iceberg catalog, the Feast store, the MLflow registry)
over a scratch data folder.

    .venv/bin/python benchmarks/bench_batch.py                    # 1M customers, 3 runs
    .venv/bin/python benchmarks/bench_batch.py --customers 100000 --repeats 5

Uses a gold-shaped feature table (benchmarks/bench_features.py) and a model trained on a
churn_v1-shaped synthetic dataset (benchmarks/bench_training.py), all under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = RESULTS / "batch_data"
    shutil.rmtree(data, ignore_errors=True)

    from mlops_assets.features.store import apply_feature_repo
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources
    from mlops_assets.serving.batch import score_days
    from mlops_assets.testing import (
        SYNTHETIC_LAST,
        register_synthetic_champion,
        scratch_settings,
        synthetic_gold_table,
    )
    from mlops_assets.world import World

    with scratch_settings(data, World()) as settings, open_resources(settings) as res:
        config = model_configs()["churn"]
        synthetic_gold_table(args.customers, 1, settings.gold_dir / "customer_features.parquet")
        store = res.feature_store.store()
        apply_feature_repo(store)
        registry = res.model_registry.registry()
        register_synthetic_champion(registry, config, data / "train_set")
        catalog = res.lakehouse.catalog()

        day = SYNTHETIC_LAST
        times, rows = [], 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = score_days(catalog, store, registry, config, [day])
            times.append(time.perf_counter() - started)
            rows = result["rows"]
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customers": args.customers,
        "rows_scored": rows,
        "median_s": round(statistics.median(times), 2),
        "runs_s": [round(t, 2) for t in times],
    }
    print(
        f"batch scoring {rows:,} customers into Iceberg: median {report['median_s']}s over {len(times)} runs {report['runs_s']}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "batch.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
