"""The closed loop benchmark: `mlops demo` end to end in a fresh scratch data folder and DVC repo
(nothing reused: the history is generated; the folder is its own DVC project), `--runs` times per
scale, with the median. Reads the
timings the demo records (data/logs/demo_report.json): each stage's duration, drift visible ->
retraining run launched by the daemon's sensor, drift visible -> the retrained version serving as
canary, and the whole command.

    .venv/bin/python benchmarks/bench_demo.py                          # 20k customers, 3 runs
    .venv/bin/python benchmarks/bench_demo.py --customers 200000 --runs 1
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def environment(customers: int) -> tuple[Path, dict]:
    root = RESULTS / f"demo_{customers}"
    # A data folder of its own is its own DVC project: the project's dvc.lock is never touched.
    return root, {
        **os.environ,
        "MLOPS_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "data" / "dagster_home"),
    }


def prepare(customers: int) -> None:
    """What `make install` does for the default folder: dagster-dbt's prepare step (the dbt
    manifest, parsed for this data folder). Not timed: the loop is measured after install."""
    _, env = environment(customers)
    mlops = str(Path(sys.executable).parent / "mlops")
    subprocess.run([mlops, "prepare"], cwd=ROOT, env=env, check=True, capture_output=True)


def run(customers: int) -> dict:
    root, env = environment(customers)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    with (root / "demo.log").open("wb") as log:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "mlops"), "demo", "--customers", str(customers)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = time.perf_counter() - started
    report_path = root / "data" / "logs" / "demo_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {
        "customers": customers,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        **report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[20_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for customers in args.customers:
        results = []
        prepare(customers)
        for _ in range(args.runs):
            result = {
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **run(customers),
            }
            print(json.dumps(result), flush=True)
            with (RESULTS / "demo.jsonl").open("a") as f:
                f.write(json.dumps(result) + "\n")
            results.append(result)
        numeric = {k for r in results for k, v in r.items() if isinstance(v, int | float)}
        medians = {
            k: statistics.median(r[k] for r in results if k in r)
            for k in sorted(numeric)
            if k not in ("customers", "exit_code")
        }
        print(json.dumps({"customers": customers, "runs": len(results), "median": medians}))


if __name__ == "__main__":
    main()
