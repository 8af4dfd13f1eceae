"""Lakehouse foundation benchmarks: generate + dbt build at scale (code location load: bench_load.py).

    .venv/bin/python benchmarks/bench_lakehouse.py                       # 100k customers, 365 days
    .venv/bin/python benchmarks/bench_lakehouse.py --customers 20000 100000 1000000

Each scale runs in a fresh data folder under benchmarks/results/ (git-ignored): landing Parquet is
generated, then `dbt build` (all models and tests) runs on the embedded DuckDB target. Figures are
medians over --repeats runs. Results are appended to benchmarks/results/lakehouse.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from mlops_assets.datagen.landing import land_day  # noqa: E402
from mlops_assets.defs.dbt.project import DBT_EXECUTABLE, DBT_PROJECT_DIR  # noqa: E402
from mlops_assets.model_config import dbt_vars  # noqa: E402
from mlops_assets.world import World  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def one_scale(customers: int, days: int) -> dict:
    data = RESULTS / f"data_{customers}"
    shutil.rmtree(data, ignore_errors=True)
    cfg = World(
        n_customers=customers, days=days, covariate_drift_from=None, concept_drift_from=None
    )
    landing = str(data / "landing")

    started = time.perf_counter()
    rows: dict[str, int] = {}
    for i in range(days):
        for table, (_, n) in land_day(cfg, landing, cfg.start_date + dt.timedelta(days=i)).items():
            rows[table] = rows.get(table, 0) + n
    generate_s = time.perf_counter() - started

    (data / "gold").mkdir(parents=True)
    env = {
        **os.environ,
        "MLOPS_ENV": "local",
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_LANDING_URI": landing,
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_TARGET_PATH": str(data / "dbt_target"),
        "DBT_LOG_PATH": str(data / "dbt_logs"),
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [DBT_EXECUTABLE, "build", "--target", "local", "--vars", dbt_vars()],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    dbt_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:])
    import duckdb

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    features = con.sql("select count(*) from gold.customer_features").fetchone()[0]
    con.close()
    shutil.rmtree(data, ignore_errors=True)
    return {
        "customers": customers,
        "days": days,
        "rows": rows,
        "feature_rows": features,
        "generate_s": round(generate_s, 2),
        "dbt_build_s": round(dbt_s, 2),
        "total_s": round(generate_s + dbt_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "scales": []}

    for customers in args.customers:
        runs = [one_scale(customers, args.days) for _ in range(args.repeats)]
        med = {
            k: statistics.median(r[k] for r in runs)
            for k in ("generate_s", "dbt_build_s", "total_s")
        }
        entry = {**runs[0], **{k: round(v, 2) for k, v in med.items()}, "repeats": len(runs)}
        report["scales"].append(entry)
        print(
            f"{customers:>9,} customers, {args.days} days: {entry['rows']['orders']:,} orders, "
            f"{entry['feature_rows']:,} feature rows | generate {med['generate_s']:.1f}s, "
            f"dbt build {med['dbt_build_s']:.1f}s, total {med['total_s']:.1f}s"
        )
    with (RESULTS / "lakehouse.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
