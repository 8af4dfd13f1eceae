"""Training benchmark: the KFP pipeline under kfp.local, end to end (fetch the DVC dataset, train
the model and the baseline, evaluate, register in MLflow).

    .venv/bin/python benchmarks/bench_training.py                 # 500k rows, plus a tiny dataset
    .venv/bin/python benchmarks/bench_training.py --rows 100000 --repeats 3

The dataset has churn_v1's schema (features from feature_repo, a label drawn from a logistic model
of them) and is versioned in a scratch data folder under benchmarks/results/ (git-ignored; a data
folder of its own is its own DVC project), and the pipeline runs on the environment's pipeline
runner resource (kfp.local) with its model registry. The tiny
dataset (2,000 rows) measures the pipeline's fixed overhead: four subprocesses that each import the
stack, DVC, MLflow registration. Results append to benchmarks/results/training.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--tiny-rows", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from mlops_assets.resources import open_resources
    from mlops_assets.testing import scratch_settings
    from mlops_assets.world import World

    # A data folder of its own: its own DVC project (the project's dvc.lock is never touched).
    data = RESULTS / "training_data"
    shutil.rmtree(data, ignore_errors=True)
    (data / "gold").mkdir(parents=True)
    for name in ("customer_features.parquet", "churn_labels.parquet"):  # the stage's deps
        pd.DataFrame({"x": [1]}).to_parquet(data / "gold" / name)
    with scratch_settings(data, World()) as settings, open_resources(settings) as res:
        report = train(args, settings, res)
    with (RESULTS / "training.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)


def train(args, settings, res) -> dict:
    from mlops_assets.datasets.versioning import commit_and_push
    from mlops_assets.model_config import model_configs
    from mlops_assets.testing import synthetic_training_set

    config = model_configs()["churn"]
    registry = res.model_registry.registry()
    lineage = {"git_commit": "bench", "dagster_run_id": "bench"}
    report: dict = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **vars(args)}
    for label, rows in (("tiny", args.tiny_rows), ("full", args.rows)):
        synthetic_training_set(settings.datasets_dir / config.feature_service, rows)
        md5 = commit_and_push(settings, config.feature_service).md5
        times, aucs = [], []
        for _ in range(args.repeats):
            run = res.pipeline_runner.run(config, md5, lineage, registry)
            times.append(run.seconds)
            aucs.append(run.metrics["model"]["roc_auc"])
        report[label] = {
            "rows": rows,
            "median_s": round(statistics.median(times), 1),
            "runs_s": [round(t, 1) for t in times],
            "test_roc_auc": round(aucs[-1], 4),
        }
        print(
            f"{label}: {rows:,} rows, pipeline incl. registration median {statistics.median(times):.1f}s over {len(times)} run(s) (ROC AUC {aucs[-1]:.3f})",
            flush=True,
        )
    return report


if __name__ == "__main__":
    main()
