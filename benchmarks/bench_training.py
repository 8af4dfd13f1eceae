"""Training benchmark: the KFP pipeline under kfp.local, end to end (fetch the DVC dataset, train
the model and the baseline, evaluate, register in MLflow).

    .venv/bin/python benchmarks/bench_training.py                 # 500k rows, plus a tiny dataset
    .venv/bin/python benchmarks/bench_training.py --rows 100000 --repeats 3

The dataset has churn_v1's schema (features from feature_repo, a label drawn from a logistic model
of them) and is versioned in a scratch DVC repo under benchmarks/results/ (git-ignored). The tiny
dataset (2,000 rows) measures the pipeline's fixed overhead: four subprocesses that each import the
stack, DVC, MLflow registration. Results append to benchmarks/results/training.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")


def register_champion(settings, config, folder: Path, rows: int = 50_000):
    """Fit the config's estimator on a churn_v1-shaped synthetic set of `rows` rows, register it in
    MLflow and make it champion; returns (version, model). Shared by the scoring benchmarks."""
    from mlops_assets.training.estimators import (
        build_estimator,
        dataset_schema,
        feature_frame,
        read_split,
    )
    from mlops_assets.training.promotion import set_alias
    from mlops_assets.training.registry import CHAMPION, log_and_register

    write_dataset(folder, rows)
    train = read_split(folder, "train")
    X = feature_frame(train, dataset_schema(folder)["features"])
    model = build_estimator(config, X).fit(X, train[config.label])
    lineage = dict.fromkeys(
        ("dvc_md5", "feature_service", "git_commit", "kfp_run_id", "dagster_run_id"), "bench"
    )
    _, version = log_and_register(
        model, X.head(3), config, {"model": {"roc_auc": 0.0}}, lineage, settings
    )
    set_alias(
        settings, config.registered_model, CHAMPION, version, actor="bench", reason="benchmark"
    )
    return version, model


def write_dataset(folder: Path, rows: int, seed: int = 0) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--tiny-rows", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from dvc.repo import Repo

    root = RESULTS / "training_repo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    Repo.init(str(root))
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(ROOT / "feature_repo", root / "feature_repo")
    (root / "data" / "gold").mkdir(parents=True)
    for name in ("customer_features.parquet", "churn_labels.parquet"):
        pd.DataFrame({"x": [1]}).to_parquet(root / "data" / "gold" / name)
    os.environ["MLOPS_DVC_ROOT"] = str(root)
    os.environ["MLOPS_DATA_DIR"] = str(root / "data")

    from mlops_assets.datasets.versioning import commit_and_push
    from mlops_assets.model_config import model_configs
    from mlops_assets.settings import get_settings
    from mlops_assets.training.runner import run_training

    get_settings.cache_clear()
    settings = get_settings()
    config = model_configs()["churn"]
    report: dict = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **vars(args)}
    for label, rows in (("tiny", args.tiny_rows), ("full", args.rows)):
        write_dataset(settings.datasets_dir / "churn_v1", rows)
        md5 = commit_and_push(settings, "churn_v1").md5
        times, aucs = [], []
        for _ in range(args.repeats):
            run = run_training(
                settings, config, md5, {"git_commit": "bench", "dagster_run_id": "bench"}
            )
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
    with (RESULTS / "training.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
