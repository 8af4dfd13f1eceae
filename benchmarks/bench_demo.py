"""The closed loop benchmark: `mlops demo` end to end in a fresh scratch data folder and DVC repo
(nothing reused: the history is generated; the folder is its own DVC project), `--runs` times per
scale, with the median. Reads the
timings the demo records (data/logs/demo_report.json): each stage's duration, drift visible ->
retraining run launched by the daemon's sensor, drift visible -> the retrained version serving as
canary, and the whole command.

    .venv/bin/python benchmarks/bench_demo.py                          # 20k customers, 3 runs
    .venv/bin/python benchmarks/bench_demo.py --customers 200000 --runs 1
    .venv/bin/python benchmarks/bench_demo.py --profiles local services  # side by side, alternating
    .venv/bin/python benchmarks/bench_demo.py --one-model churn  # every model vs churn alone

The services profile (`MLOPS_ENV=services`) runs on its own SeaweedFS node (ports shifted by
MLOPS_SERVICES_PORT_OFFSET, default 500 here), databases (prefix `mlops_bench`) and Redis db 8;
the demo resets all three at its start. `mlops services down` with the same variables stops it.
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


def environment(customers: int, profile: str = "local") -> tuple[Path, dict]:
    root = RESULTS / (f"demo_{customers}" if profile == "local" else f"demo_{profile}_{customers}")
    root = root.with_name(root.name.replace(":", "_"))
    # A data folder of its own is its own DVC project: the project's dvc.lock is never touched.
    env = {
        **os.environ,
        "MLOPS_ENV": profile.split(":")[0],
        "MLOPS_DATA_DIR": str(root / "data"),
    }
    if profile.startswith("services"):
        env.setdefault("MLOPS_SERVICES_PORT_OFFSET", "500")
        env.update(MLOPS_SERVICES_DB_PREFIX="mlops_bench", MLOPS_SERVICES_REDIS_DB="8")
        env.pop("DAGSTER_HOME", None)  # the profile's own home (PostgreSQL storage)
    else:
        env["DAGSTER_HOME"] = str(root / "data" / "dagster_home")
    return root, env


def prepare(customers: int, profile: str = "local") -> None:
    """What `make install` does for the default folder: dagster-dbt's prepare step (the dbt
    manifest, parsed for this data folder). Not timed: the loop is measured after install."""
    _, env = environment(customers, profile)
    mlops = str(Path(sys.executable).parent / "mlops")
    subprocess.run([mlops, "prepare"], cwd=ROOT, env=env, check=True, capture_output=True)


def run(customers: int, profile: str = "local") -> dict:
    """One demo; a profile `local:<model>` runs that model's story alone (`--model`)."""
    root, env = environment(customers, profile)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    model = ["--model", profile.split(":")[1]] if ":" in profile else []
    started = time.perf_counter()
    with (root / "demo.log").open("wb") as log:
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "mlops"),
                "demo",
                "--customers",
                str(customers),
                *model,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = time.perf_counter() - started
    if profile.startswith("services"):  # its idle node would take CPU from the next run
        mlops = str(Path(sys.executable).parent / "mlops")
        subprocess.run([mlops, "services", "down"], cwd=ROOT, env=env, capture_output=True)
    report_path = root / "data" / "logs" / "demo_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {
        "customers": customers,
        "profile": profile,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        **report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[20_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profiles", nargs="+", default=["local"], choices=["local", "services"])
    parser.add_argument(
        "--one-model", help="also run this model's story alone, alternating (ratio: all / one)"
    )
    args = parser.parse_args()
    if args.one_model:
        args.profiles = [f"{args.profiles[0]}:{args.one_model}", args.profiles[0]]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for customers in args.customers:
        results: dict[str, list[dict]] = {profile: [] for profile in args.profiles}
        for profile in args.profiles:
            prepare(customers, profile)
        for _ in range(args.runs):
            for profile in args.profiles:  # alternating: the machine's noise hits both alike
                result = {
                    "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    **run(customers, profile),
                }
                print(json.dumps(result), flush=True)
                with (RESULTS / "demo.jsonl").open("a") as f:
                    f.write(json.dumps(result) + "\n")
                results[profile].append(result)
        medians = {profile: _medians(rows) for profile, rows in results.items()}
        for profile, median in medians.items():
            print(json.dumps({"customers": customers, "profile": profile, "median": median}))
        if len(medians) == 2:
            base, other = (medians[p]["wall_s"] for p in args.profiles)
            print(json.dumps({"wall_ratio": round(other / base, 2), "of": args.profiles[::-1]}))


def _medians(results: list[dict]) -> dict[str, float]:
    numeric = {k for r in results for k, v in r.items() if isinstance(v, int | float)}
    return {
        k: statistics.median(r[k] for r in results if k in r)
        for k in sorted(numeric)
        if k not in ("customers", "exit_code")
    }


if __name__ == "__main__":
    main()
