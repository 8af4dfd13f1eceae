"""Code location load against the libraries' own floor, side by side in one run.

    .venv/bin/python benchmarks/bench_load.py --runs 15

Each round starts fresh interpreters, in rotating order so drift in machine load hits all alike:
- floor: `import dagster, dagster_dbt`;
- shape floor: the floor plus the two library steps the project's shape cannot skip, dg's
  `load_from_defs_folder` describing every installed component type (JSON schemas) and
  dagster-dbt's `@dbt_assets` running dbt's selector over the manifest (it imports networkx);
- code location: `import mlops_assets.definitions` plus building the definitions (what `dagster
  dev` and `dg` do per code location process).
Prints medians and ratios; appends to benchmarks/results/load.jsonl. The dbt manifest must exist
(`mlops prepare`), as for every Dagster entry point.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

FLOOR = "import dagster, dagster_dbt"
LOCATION = "import mlops_assets.definitions as m; m.defs().get_repository_def()"
SHAPE_FLOOR = (
    "import json, sys, dagster, dagster_dbt\n"
    "from dagster.components.core.load_defs import get_library_json_enriched_defs\n"
    "from dagster_dbt.utils import select_unique_ids\n"
    "get_library_json_enriched_defs(None)\n"
    "select_unique_ids('fqn:*', '', '', None, json.load(open(sys.argv[1])))\n"
)
MANIFEST = "from mlops_assets.defs.dbt.project import manifest_path; print(manifest_path())"


def timed(code: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    manifest = subprocess.run(
        [sys.executable, "-c", MANIFEST], check=True, cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    probes = {"floor": (FLOOR,), "shape_floor": (SHAPE_FLOOR, manifest), "location": (LOCATION,)}
    for probe in probes.values():  # warm the page cache and .pyc files
        timed(*probe)
    times: dict[str, list[float]] = {name: [] for name in probes}
    names = list(probes)
    for i in range(args.runs):
        for name in names[i % 3 :] + names[: i % 3]:
            times[name].append(timed(*probes[name]))
    med = {name: statistics.median(t) for name, t in times.items()}
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        **{f"{name}_median_s": round(m, 3) for name, m in med.items()},
        "ratio": round(med["location"] / med["floor"], 3),
        "shape_floor_ratio": round(med["shape_floor"] / med["floor"], 3),
        "own_share_s": round(med["location"] - med["shape_floor"], 3),
    }
    print(
        f"floor {med['floor']:.2f} s | shape floor {med['shape_floor']:.2f} s "
        f"({report['shape_floor_ratio']:.3f}x) | code location {med['location']:.2f} s "
        f"({report['ratio']:.3f}x floor; project's own share {report['own_share_s']:.2f} s), "
        f"medians of {args.runs} runs each"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "load.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
