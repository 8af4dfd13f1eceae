"""The closed loop benchmark: `mlops demo` end to end in a scratch data folder and DVC repo, at the
default scale and at 10x customers. Reads the timings the demo records (data/monitoring/
demo_report.json): drift visible -> retraining run launched by the daemon's sensor, drift visible
-> the retrained version serving as canary, and the whole command.

    .venv/bin/python benchmarks/bench_demo.py                        # 20k and 200k customers
    .venv/bin/python benchmarks/bench_demo.py --customers 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def scratch_repo(root: Path) -> None:
    """A git + DVC repo with the project's dvc.yaml and remotes, so the demo's dataset versions do
    not touch the project's dvc.lock."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=root, check=True)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(ROOT / "feature_repo", root / "feature_repo")  # dvc.yaml's dependencies


def run(customers: int) -> dict:
    root = RESULTS / f"demo_{customers}"
    scratch_repo(root)
    env = {
        **os.environ,
        "MLOPS_N_CUSTOMERS": str(customers),
        "MLOPS_DATA_DIR": str(root / "data"),
        "MLOPS_DVC_ROOT": str(root),
        "DAGSTER_HOME": str(root / "data" / "dagster_home"),
    }
    started = time.perf_counter()
    with (root / "demo.log").open("wb") as log:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "mlops"), "demo"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = time.perf_counter() - started
    report_path = root / "data" / "monitoring" / "demo_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {
        "customers": customers,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        **report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[20_000, 200_000])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for customers in args.customers:
        result = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **run(customers)}
        print(json.dumps(result))
        with (RESULTS / "demo.jsonl").open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
