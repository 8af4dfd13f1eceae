"""One inference-log append as the table's snapshots pile up, with and without the project's
cache of pyiceberg's `Transaction.table_metadata` (`mlops_assets/lakehouse/pyiceberg_fixes.py`).

A real pyiceberg SQL catalog and table with the maintenance job's properties; batches of 250 rows
(a second at 250 rps) appended as the server's writer does (`append_with_retry`), files compacted
every 300 appends as the upkeep would, snapshots kept (as inside the retention). At each depth in
--depths the next --samples appends alternate the two arms (pyiceberg's property, the cache), and
the median per arm is printed with their ratio.

    .venv/bin/python benchmarks/bench_log_append.py                    # depths 100,500,1000,2000
    .venv/bin/python benchmarks/bench_log_append.py --depths 100,400 --samples 6
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time

DAY = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)


def _rows(b: int, rows: int = 250):
    from mlops_assets.serving.inference_log import rows_to_arrow

    at = int((DAY + dt.timedelta(seconds=b)).timestamp() * 1_000_000)
    return rows_to_arrow(
        [
            (f"r{b}-{i}", i, '{"x": 1}', 0.5, 0, "low", "score", "3", "champion", 1.0, at + i)
            for i in range(rows)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="100,500,1000,2000")
    parser.add_argument("--samples", type=int, default=10, help="appends per depth, both arms")
    args = parser.parse_args()
    depths = sorted(int(d) for d in args.depths.split(","))

    from mlops_assets.lakehouse import pyiceberg_fixes
    from mlops_assets.lakehouse.catalog import sql_catalog
    from mlops_assets.lakehouse.maintenance import compact, ensure_properties
    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.serving.inference_log import append_with_retry

    table = INFERENCE_LOG.open(sql_catalog(tempfile.mkdtemp(prefix="bench-append-")), "churn")
    ensure_properties(table)
    batch, build_started = 0, time.monotonic()
    print(f"{'snapshots':>9} {'pyiceberg s':>12} {'cached s':>9} {'ratio':>6}")
    for depth in depths:
        pyiceberg_fixes.install()
        while len(table.snapshots()) < depth:
            batch += 1
            if batch % 300 == 0:
                compact(table, 64 << 20, 2)
            append_with_retry(table, _rows(batch))
        arms: dict[bool, list[float]] = {False: [], True: []}
        for sample in range(2 * args.samples):
            cached = sample % 2 == 1
            if cached:
                pyiceberg_fixes.install()
            else:
                pyiceberg_fixes.uninstall()
            batch += 1
            started = time.perf_counter()
            append_with_retry(table, _rows(batch))
            arms[cached].append(time.perf_counter() - started)
        plain, fast = statistics.median(arms[False]), statistics.median(arms[True])
        print(f"{depth:>9} {plain:>12.3f} {fast:>9.3f} {plain / fast:>5.1f}x", flush=True)
    pyiceberg_fixes.install()
    print(f"({batch} appends in {time.monotonic() - build_started:.0f} s)")


if __name__ == "__main__":
    main()
