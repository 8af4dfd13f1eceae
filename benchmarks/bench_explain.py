"""Explanations benchmark, two parts in one run:

- route: `POST /v1/models/churn:explain` for one customer over HTTP on the project's KServe model
  server (a separate process on 127.0.0.1, the synthetic champion: TreeSHAP over every tree), N
  sequential requests per round on one keep-alive connection after a warm-up; p50/p99 per round
  and the median over rounds, with `:predict` measured the same way beside it. Target: p99 <= 50 ms.
- batch: what the `top_reasons` column adds to a day's batch predictions (`score_days`, as in
  bench_batch.py): the same day scored with `explain.top_reasons_k` = 0 and = 3, alternating.

    .venv/bin/python benchmarks/bench_explain.py                         # 20k customers, 3 x 1000
    .venv/bin/python benchmarks/bench_explain.py --requests 2000 --batch-customers 100000
    .venv/bin/python benchmarks/bench_explain.py --batch-customers 0     # the route only
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
from serving_harness import synthetic_champion_online

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000, help="in the online store")
    parser.add_argument("--requests", type=int, default=1000, help="per round and route")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-customers", type=int, default=20_000, help="0: skip the batch")
    args = parser.parse_args()
    report: dict = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    report["route"] = bench_route(args)
    if args.batch_customers:
        report["batch"] = bench_batch_cost(args)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "explain.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")


def bench_route(args) -> dict:
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources
    from mlops_assets.serving.rollout import deploy
    from mlops_assets.testing import (
        SYNTHETIC_LAST,
        free_port,
        scratch_settings,
    )
    from mlops_assets.world import World

    data = RESULTS / "explain_data"
    shutil.rmtree(data, ignore_errors=True)
    base = model_configs()["churn"]
    port = free_port()
    config = base.model_copy(update={"serving": base.serving.model_copy(update={"port": port})})
    with scratch_settings(data, World()) as settings, open_resources(settings) as res:
        print(f"setup: {args.customers:,} customers online, one synthetic MLflow champion")
        _, registry, version, model = synthetic_champion_online(
            args.customers, settings, res, data, config
        )
        deploy(registry, res.deployer, config, actor="bench", reason="benchmark")
        request_ts = (
            dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC) + dt.timedelta(hours=12)
        ).isoformat()
        try:
            rounds = _rounds(args, port, config.name, request_ts)
        finally:
            res.deployer.stop(config.name)
    shutil.rmtree(data, ignore_errors=True)
    trees = len(model.named_steps["clf"]._predictors)
    return {"customers": args.customers, "model_version": version, "trees": trees, **rounds}


def _rounds(args, port: int, model: str, request_ts: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    rng = np.random.default_rng(0)

    def send(route: str, customer: int) -> float:
        body = json.dumps({"instances": [{"customer_id": customer, "request_ts": request_ts}]})
        started = time.perf_counter()
        conn.request(
            "POST", f"/v1/models/{model}:{route}", body, {"content-type": "application/json"}
        )
        response = conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(payload)
        return elapsed

    ids = rng.integers(1, args.customers + 1, size=args.requests * (args.rounds + 1))
    for customer in ids[:200]:  # warm-up: the explainer is built on the first explain
        send("explain", int(customer)), send("predict", int(customer))
    per_round: dict[str, list[dict]] = {"explain": [], "predict": []}
    for r in range(args.rounds):
        picks = ids[(r + 1) * args.requests : (r + 2) * args.requests]
        for route in ("explain", "predict"):
            samples = [send(route, int(c)) for c in picks]
            q = np.percentile(samples, [50, 99])
            per_round[route].append({"p50_ms": round(q[0], 3), "p99_ms": round(q[1], 3)})
    conn.close()
    out = {}
    for route, rounds in per_round.items():
        out[route] = {
            "rounds": rounds,
            "median_p50_ms": statistics.median(x["p50_ms"] for x in rounds),
            "median_p99_ms": statistics.median(x["p99_ms"] for x in rounds),
        }
        print(f"{route}: one customer over HTTP, {args.requests} sequential requests x "
              f"{args.rounds}: p50 {out[route]['median_p50_ms']} ms, "
              f"p99 {out[route]['median_p99_ms']} ms (median of rounds)")  # fmt: skip
    return out


def bench_batch_cost(args) -> dict:
    """One day's `score_days` with top reasons off and on, alternating; medians of the rounds."""
    from bench_batch import _profile_env, _setup

    from mlops_assets.serving.batch import score_days

    times: dict[int, list[float]] = {0: [], 3: []}
    with _setup("local", args.batch_customers) as (catalog, store, registry, config, days):
        for _ in range(args.rounds):
            for k in times:
                explain = config.explain.model_copy(update={"top_reasons_k": k})
                with _profile_env("local"):
                    started = time.perf_counter()
                    result = score_days(
                        catalog,
                        store,
                        registry,
                        config.model_copy(update={"explain": explain}),
                        days,
                    )
                    times[k].append(time.perf_counter() - started)
    off, on = statistics.median(times[0]), statistics.median(times[3])
    print(f"batch: {result['rows']:,} rows: top_reasons off {off:.2f} s, on (k=3) {on:.2f} s "
          f"(+{on - off:.2f} s, x{on / off:.2f}), medians of {args.rounds}")  # fmt: skip
    return {
        "rows": result["rows"],
        "off_s": [round(t, 2) for t in times[0]],
        "on_k3_s": [round(t, 2) for t in times[3]],
        "median_off_s": round(off, 2),
        "median_on_s": round(on, 2),
        "added_ms_per_1000_rows": round((on - off) / result["rows"] * 1e6, 1),
    }


if __name__ == "__main__":
    main()
