"""Batch scoring benchmark: one day's predictions for N customers, scored by the MLflow champion
and committed to the Iceberg table (pyiceberg SQL catalog), end to end as the Dagster asset does it
(`score_day`: offline features, model, label engine, one Iceberg overwrite of the day).

    .venv/bin/python benchmarks/bench_batch.py                    # 1M customers, 3 runs
    .venv/bin/python benchmarks/bench_batch.py --customers 100000 --repeats 5

Uses a gold-shaped feature table (benchmarks/bench_features.py) and a model trained on a
churn_v1-shaped synthetic dataset (benchmarks/bench_training.py), all under benchmarks/results/.
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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = RESULTS / "batch_data"
    shutil.rmtree(data, ignore_errors=True)
    os.environ["MLOPS_DATA_DIR"] = str(data)
    from bench_features import LAST, gold_table
    from bench_training import register_champion

    from mlops_assets.features.store import apply_feature_repo, feature_store
    from mlops_assets.model_config import model_configs
    from mlops_assets.serving.batch import score_day
    from mlops_assets.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    config = model_configs()["churn"]
    gold_table(args.customers, 1, settings.gold_dir / "customer_features.parquet")
    store = feature_store(settings)
    apply_feature_repo(store)
    register_champion(settings, config, data / "train_set")

    day = LAST.date()
    times, rows = [], 0
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = score_day(settings, config, store, day)
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
