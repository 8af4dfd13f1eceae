"""Inference log upkeep: an hour of online traffic (3,600 one-second batches of 200 rows, 200 rps)
appended to a real pyiceberg SQL catalog as the server's writer does (`append_with_retry`, the
maintenance job's table properties, snapshots expired every 10 minutes of traffic as its schedule
would), then compacted while a writer keeps appending a batch a second.

Measured: append latency at the end of the build; time to compact (median of --runs, each run on
the same 3,600-file layout: the table is set back to the snapshot before compaction between runs)
and its commit attempts; files before/after; and, before vs after compaction (median of 3 each),
a full pyiceberg scan, a one-day read with pyiceberg and with DuckDB (`iceberg_scan`), and the
last 5 minutes of requests (what an online drift window reads).

    .venv/bin/python benchmarks/bench_log_maintenance.py                  # 3,600 batches
    .venv/bin/python benchmarks/bench_log_maintenance.py --batches 600    # 10 minutes of traffic
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DAY = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)


def _batch(b: int, rows: int) -> list[tuple]:
    at = int((DAY + dt.timedelta(seconds=b)).timestamp() * 1_000_000)
    features = json.dumps({"spend_30d_usd": 12.5, "order_count_30d": 3, "plan": "basic"})
    return [
        (
            f"r{b}-{i}",
            b * rows + i,
            features,
            i / rows,
            i % 2,
            "low",
            "score",
            "7",
            "champion",
            1.2,
            at + i * (1_000_000 // rows),
        )
        for i in range(rows)
    ]


def build(table, batches: int, rows: int) -> list[float]:
    """The hour of traffic; returns the append latencies (s) of the last 100 batches."""
    from mlops_assets.lakehouse.maintenance import ensure_properties, expire_snapshots
    from mlops_assets.serving.inference_log import append_with_retry, rows_to_arrow

    ensure_properties(table)
    latencies = []
    for b in range(batches):
        batch = rows_to_arrow(_batch(b, rows))
        started = time.perf_counter()
        append_with_retry(table, batch)
        latencies.append(time.perf_counter() - started)
        if b % 600 == 599:  # the schedule's expiry, every 10 minutes of traffic
            expire_snapshots(table, dt.datetime.now(dt.UTC), 10, remove_orphans=False)
        if b % 500 == 499:
            print(f"  {b + 1} batches, last append {latencies[-1] * 1000:.0f} ms", flush=True)
    return latencies[-100:]


def _median_seconds(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def reads(table, batches: int) -> dict[str, float]:
    """Median seconds of each read on the table's current snapshot."""
    import duckdb

    from mlops_assets.lakehouse.duck import extension_path

    day = DAY.date().isoformat()
    con = duckdb.connect()
    for name in ("avro", "iceberg"):
        con.execute(f"LOAD '{extension_path(name)}'")
    location = table.metadata_location
    last = (DAY + dt.timedelta(seconds=max(batches - 300, 0))).isoformat()
    return {
        "full_scan_pyiceberg_s": _median_seconds(lambda: table.scan().to_arrow()),
        "one_day_pyiceberg_s": _median_seconds(
            lambda: table.scan(row_filter=f"request_date = '{day}'").to_arrow()
        ),
        "one_day_duckdb_s": _median_seconds(
            lambda: con.execute(
                f"SELECT count(*), avg(score) FROM iceberg_scan('{location}') "
                f"WHERE request_date = DATE '{day}'"
            ).fetchall()
        ),
        "last_5_min_pyiceberg_s": _median_seconds(
            lambda: table.scan(row_filter=f"requested_at >= '{last}'").to_arrow()
        ),
    }


def compact_while_writing(table, catalog, rows: int, first_batch: int) -> tuple:
    """One compaction while another handle appends a batch a second (the server's writer)."""
    from mlops_assets.lakehouse.maintenance import compact
    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.serving.inference_log import append_with_retry, rows_to_arrow

    stop = threading.Event()
    writer_table = catalog.load_table(INFERENCE_LOG.name("bench"))

    def write() -> None:
        b = first_batch
        while not stop.wait(1.0):
            append_with_retry(writer_table, rows_to_arrow(_batch(b, rows)))
            b += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        started = time.perf_counter()
        result = compact(table, 128 << 20, 10, sort_by="requested_at")
        return time.perf_counter() - started, result
    finally:
        stop.set()
        writer.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3600)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from mlops_assets.lakehouse.catalog import sql_catalog
    from mlops_assets.lakehouse.maintenance import live_files
    from mlops_assets.lakehouse.tables import INFERENCE_LOG

    folder = Path(tempfile.mkdtemp(prefix="bench-log-maintenance-"))
    catalog = sql_catalog(folder)
    table = INFERENCE_LOG.open(catalog, "bench")
    print(f"building {args.batches} batches of {args.rows} rows in {folder}", flush=True)
    started = time.perf_counter()
    tail = build(table, args.batches, args.rows)
    build_s = time.perf_counter() - started
    table.refresh()
    before_id = table.current_snapshot().snapshot_id
    files_before = len(live_files(table))
    before = reads(table, args.batches)

    timings, results = [], []
    for run in range(args.runs):
        if run:  # back to the uncompacted layout (the compacted files stay as orphans)
            table.refresh()
            table.manage_snapshots().set_current_snapshot(before_id).commit()
        seconds, result = compact_while_writing(
            table, catalog, args.rows, args.batches + run * 1000
        )
        timings.append(seconds)
        results.append(result)
        print(f"  compaction {run + 1}: {seconds:.2f} s, {result.attempts} attempt(s)", flush=True)
    table.refresh()
    after = reads(table, args.batches)
    figures = {
        "benchmark": "log_maintenance",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_1m": os.getloadavg()[0],
        "batches": args.batches,
        "rows_per_batch": args.rows,
        "build_s": round(build_s, 1),
        "append_p50_last_100_ms": round(statistics.median(tail) * 1000, 1),
        "files_before": files_before,
        "files_after": len(live_files(table)),
        "compaction_s_median": round(statistics.median(timings), 2),
        "compaction_attempts": [r.attempts for r in results],
        "rows_compacted": results[-1].rows_after,
        "rows_preserved": all(r.rows_before == r.rows_after for r in results),
        "bytes_before": results[-1].bytes_before,
        "bytes_after": results[-1].bytes_after,
        "reads_before_s": {k: round(v, 3) for k, v in before.items()},
        "reads_after_s": {k: round(v, 3) for k, v in after.items()},
    }
    print(json.dumps(figures, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "log_maintenance.jsonl").open("a") as f:
        f.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
