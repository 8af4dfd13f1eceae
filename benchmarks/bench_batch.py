"""Batch scoring benchmark: one day's predictions for N customers, scored by the MLflow champion
and committed to the Iceberg table (pyiceberg SQL catalog), end to end as the Dagster asset does it
(`score_days` over the day: offline features, model, label engine, one Iceberg overwrite of the
day), with the environment's resources (the Iceberg catalog, the Feast store, the MLflow registry)
over a scratch data folder.

    .venv/bin/python benchmarks/bench_batch.py                    # 1M customers, 3 runs
    .venv/bin/python benchmarks/bench_batch.py --customers 100000 --repeats 5
    .venv/bin/python benchmarks/bench_batch.py --profiles local services   # side by side

The services profile scores into the Iceberg REST catalog of its own SeaweedFS node (S3), with
the Feast registry and MLflow on PostgreSQL; the embedded one into pyiceberg's SQL catalog.

Uses a gold-shaped feature table (benchmarks/bench_features.py) and a model trained on a
churn_v1-shaped synthetic dataset (benchmarks/bench_training.py), all under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import statistics
import time
import warnings
from pathlib import Path

from mlops_assets.serving.batch import score_days

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
warnings.filterwarnings("ignore")


# The services profile's own node, databases and Redis db (never a user's `mlops services`).
SERVICES = {
    "MLOPS_ENV": "services",
    "MLOPS_SERVICES_PORT_OFFSET": "600",
    "MLOPS_SERVICES_DB_PREFIX": "mlops_benchb",
    "MLOPS_SERVICES_REDIS_DB": "7",
}
LOCAL = {"MLOPS_ENV": "local", **dict.fromkeys(SERVICES.keys() - {"MLOPS_ENV"})}
S3_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profiles", nargs="+", default=["local"], choices=["local", "services"])
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        setups = {p: stack.enter_context(_setup(p, args.customers)) for p in args.profiles}
        times: dict[str, list[float]] = {p: [] for p in args.profiles}
        rows = 0
        for _ in range(args.repeats):
            for profile in args.profiles:  # alternating: the machine's noise hits both alike
                with _profile_env(profile):
                    started = time.perf_counter()
                    result = score_days(*setups[profile])
                    times[profile].append(time.perf_counter() - started)
                rows = result["rows"]
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customers": args.customers,
        "rows_scored": rows,
        **{
            profile: {
                "median_s": round(statistics.median(t), 2),
                "runs_s": [round(x, 2) for x in t],
            }
            for profile, t in times.items()
        },
    }
    for profile in args.profiles:
        print(
            f"{profile}: batch scoring {rows:,} customers into Iceberg: median "
            f"{report[profile]['median_s']}s over {args.repeats} runs {report[profile]['runs_s']}"
        )
    if len(args.profiles) == 2:
        first, second = (report[p]["median_s"] for p in args.profiles)
        report["ratio"] = round(second / first, 2)
        print(f"{args.profiles[1]} / {args.profiles[0]}: {report['ratio']}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "batch.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")


@contextlib.contextmanager
def _profile_env(profile: str):
    """The profile's variables; the embedded profile runs without the services' S3 ones."""
    from mlops_assets.processes import environment

    variables = SERVICES if profile == "services" else {**LOCAL, **dict.fromkeys(S3_VARIABLES)}
    with environment(variables):
        yield


@contextlib.contextmanager
def _setup(profile: str, customers: int):
    """A scratch data folder of the profile with a gold-shaped feature table of `customers`
    and a synthetic champion: the arguments of `score_days` for one day."""
    from mlops_assets.features.store import apply_feature_repo
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources
    from mlops_assets.testing import (
        SYNTHETIC_LAST,
        register_synthetic_champion,
        scratch_settings,
        synthetic_gold_table,
    )
    from mlops_assets.world import World

    data = RESULTS / f"batch_data_{profile}"
    shutil.rmtree(data, ignore_errors=True)
    with _profile_env(profile), scratch_settings(data, World()) as settings:
        if settings.on_services:
            from mlops_assets.service_stores import reset_all

            reset_all(settings)
        with open_resources(settings) as res:
            config = model_configs()["churn"]
            gold = settings.gold_dir / "customer_features.parquet"
            synthetic_gold_table(customers, 1, gold)
            if settings.on_services:  # where dbt writes gold on this profile
                _upload(gold, f"{settings.gold_uri}/customer_features.parquet")
            store = res.feature_store.store()
            apply_feature_repo(store)
            registry = res.model_registry.registry()
            register_synthetic_champion(registry, config, data / "train_set")
            catalog = res.lakehouse.catalog()
    try:
        yield catalog, store, registry, config, [SYNTHETIC_LAST]
    finally:
        if profile == "services":
            with _profile_env(profile), scratch_settings(data, World()) as settings:
                from mlops_assets.services import stop_seaweed

                stop_seaweed(settings.seaweed())
        shutil.rmtree(data, ignore_errors=True)


def _upload(path: Path, uri: str) -> None:
    import pyarrow.fs as pafs

    from mlops_assets.lakehouse.files import filesystem

    fs, key = filesystem(uri)
    pafs.copy_files(
        str(path), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )


if __name__ == "__main__":
    main()
