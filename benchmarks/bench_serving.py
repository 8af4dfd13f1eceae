"""Online serving benchmark: one-customer predictions at a fixed request rate, side by side in one run.

- ours: the project's KServe model server (`mlops_assets.serving.server`, a separate process on
  127.0.0.1): online feature lookup, the MLflow model, the label engine, the Iceberg inference log.
- naive: what a user would wire by hand on the same store and model: Feast SDK
  `get_online_features` in the client, then a POST to `mlflow models serve` (no label engine, no log).

Requests are sent open-loop at --rate per second from one client (latency counts from each
request's scheduled send time, so a slow answer also delays the next); the two paths alternate in
rounds so both see the same machine state.

    .venv/bin/python benchmarks/bench_serving.py                     # 100k customers, 200 rps, 3 x 10 s per path
    .venv/bin/python benchmarks/bench_serving.py --rate 400 --seconds 20

With --with-fraud it instead measures fraud beside churn in the same model server process, on a
shop built with dbt (--fraud-customers, 150 days) and both champions trained on it: one-row
requests at --rate, churn by customer_id and fraud by (order_id, customer_id) of the last day's
orders (an order and a customer lookup), the two models alternating in rounds; per model p50/p99
(pooled, and the median over rounds) of latency and service time, and fraud p99 / churn p99.

    .venv/bin/python benchmarks/bench_serving.py --with-fraud        # 3000 customers, 200 rps
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
warnings.filterwarnings("ignore")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(port: int, path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"nothing ready on port {port}{path}")


def run_rate(
    send, ids: np.ndarray, rate: float, seconds: float, rng
) -> tuple[list[float], list[float]]:
    """Open loop: request i is due at start + i / rate. Returns latency = done - due (what a caller
    at that rate sees, queueing included) and service time = done - sent, both in ms."""
    n = int(rate * seconds)
    interval = 1.0 / rate
    picks = rng.choice(ids, size=n)
    latencies, service = [], []
    start = time.perf_counter() + 0.05
    for i in range(n):
        due = start + i * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        sent = time.perf_counter()
        send(int(picks[i]))
        done = time.perf_counter()
        latencies.append((done - due) * 1000)
        service.append((done - sent) * 1000)
    return latencies, service


class Client:
    """One keep-alive connection; reconnects once if the server closed it while idle (uvicorn
    closes idle keep-alive connections after 5 s, e.g. while the other path's round runs)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def post(self, path: str, body: str) -> bytes:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, {"content-type": "application/json"})
                response = self.conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(payload)
        return payload


def summary(samples: list[float]) -> dict[str, float]:
    q = np.percentile(samples, [50, 90, 99])
    return {
        "p50_ms": round(float(q[0]), 3),
        "p90_ms": round(float(q[1]), 3),
        "p99_ms": round(float(q[2]), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "n": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--with-fraud",
        action="store_true",
        help="fraud beside churn in one server process, on a dbt-built shop (no naive path)",
    )
    parser.add_argument(
        "--fraud-customers", type=int, default=3000, help="customers of the --with-fraud shop"
    )
    args = parser.parse_args()
    if args.with_fraud:
        from bench_serving_fraud import main_fraud

        main_fraud(args, RESULTS)
        return

    data = RESULTS / "serving_data"
    shutil.rmtree(data, ignore_errors=True)
    from mlops_assets.resources import open_resources
    from mlops_assets.testing import scratch_settings
    from mlops_assets.world import World

    with scratch_settings(data, World()) as settings, open_resources(settings) as res:
        report = bench(args, settings, res, data)
    print(json.dumps(report, indent=2))
    if report["inference_log_rows"] != report["requests_to_ours"]:
        print(
            f"INFERENCE LOG MISMATCH: {report['inference_log_rows']} rows for "
            f"{report['requests_to_ours']} requests"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "serving.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)


def setup(args, settings, res, data: Path, config):
    """The online store filled with `args.customers` and an MLflow champion; returns the store,
    the registry, the champion's version and its input columns."""

    from mlops_assets.features.bulk import bulk_materialize
    from mlops_assets.features.store import apply_feature_repo
    from mlops_assets.testing import (
        SYNTHETIC_LAST,
        register_synthetic_champion,
        synthetic_gold_table,
    )

    print(f"setup: {args.customers:,} customers in the online store, one MLflow champion")
    synthetic_gold_table(args.customers, 1, settings.gold_dir / "customer_features.parquet")
    store = res.feature_store.store()
    apply_feature_repo(store)
    start = dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=1)
    bulk_materialize(store, start, start + dt.timedelta(days=2))
    registry = res.model_registry.registry()
    version, model = register_synthetic_champion(registry, config, data / "train_set")
    return store, registry, version, list(model.feature_names_in_)


def mlflow_serve(registry, config, version: str, port: int, log: Path) -> subprocess.Popen:
    """`mlflow models serve` of the champion: the naive path's model server."""
    bin_dir = Path(sys.executable).parent
    model = f"models:/{config.registered_model}/{version}"
    serve = [str(bin_dir / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local"]
    address = ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    return subprocess.Popen(
        [*serve, *address],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": registry.tracking_uri,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # it runs `uvicorn`
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def alternate(args, paths: dict) -> dict[str, tuple[list, list]]:
    """Each path at the fixed rate, in alternating rounds after a warm-up; latency and service
    time samples per path."""
    ids = np.arange(1, args.customers + 1)
    rng = np.random.default_rng(0)
    for send in paths.values():
        run_rate(send, ids, args.rate, 2, rng)
    samples = {name: ([], []) for name in paths}
    for _ in range(args.rounds):
        for name, send in paths.items():
            latency, busy = run_rate(send, ids, args.rate, args.seconds, rng)
            samples[name][0].extend(latency)
            samples[name][1].extend(busy)
    return samples


def bench(args, settings, res, data: Path) -> dict:
    """Both paths on the scratch data folder's store and registry; the figures."""

    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.model_config import model_configs
    from mlops_assets.serving.rollout import deploy
    from mlops_assets.testing import SYNTHETIC_LAST

    base = model_configs()["churn"]
    port, naive_port = _free_port(), _free_port()
    config = base.model_copy(update={"serving": base.serving.model_copy(update={"port": port})})
    store, registry, version, columns = setup(args, settings, res, data, config)
    deploy(registry, res.deployer, config, actor="bench", reason="benchmark")
    naive = mlflow_serve(registry, config, version, naive_port, data / "mlflow_serve.log")
    request_ts = dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC) + dt.timedelta(
        hours=12
    )
    sent_ours = 0
    try:
        _wait(naive_port, "/ping")
        ours_client, naive_client = Client(port), Client(naive_port)
        feature_service = store.get_feature_service(config.feature_service)

        def ours(customer: int) -> None:
            nonlocal sent_ours
            body = {"instances": [{"customer_id": customer, "request_ts": request_ts.isoformat()}]}
            ours_client.post(f"/v1/models/{config.name}:predict", json.dumps(body))
            sent_ours += 1

        def naive_path(customer: int) -> None:
            row = store.get_online_features(
                features=feature_service,
                entity_rows=[{"customer_id": customer, "request_ts": request_ts}],
            ).to_dict()
            body = {"dataframe_split": {"columns": columns, "data": [[row[c][0] for c in columns]]}}
            naive_client.post("/invocations", json.dumps(body))

        samples = alternate(args, {"ours": ours, "naive": naive_path})
    finally:
        os.killpg(naive.pid, signal.SIGTERM)
        naive.wait(30)
        stopped_at = time.perf_counter()
        res.deployer.stop(config.name)
        stop_s = time.perf_counter() - stopped_at

    logged = res.lakehouse.catalog().load_table(INFERENCE_LOG.name(config.name))
    logged = len(logged.scan(selected_fields=("request_id",)).to_arrow())
    return figures(args, samples, logged, sent_ours, stop_s)


def figures(args, samples, logged: int, sent_ours: int, stop_s: float) -> dict:
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "customers": args.customers,
        "rate_rps": args.rate,
        "ours": summary(samples["ours"][0]),
        "naive_feast_sdk_plus_mlflow_serve": summary(samples["naive"][0]),
        # Without queueing: how long one request takes once sent (shows the naive path's capacity).
        "ours_service_time": summary(samples["ours"][1]),
        "naive_service_time": summary(samples["naive"][1]),
        "inference_log_rows": logged,
        "requests_to_ours": sent_ours,
        "shutdown_with_log_flush_s": round(stop_s, 2),
    }
    report["p99_ratio_naive_over_ours"] = round(
        report["naive_feast_sdk_plus_mlflow_serve"]["p99_ms"] / report["ours"]["p99_ms"], 2
    )
    report["service_p99_ratio_naive_over_ours"] = round(
        report["naive_service_time"]["p99_ms"] / report["ours_service_time"]["p99_ms"], 2
    )
    return report


if __name__ == "__main__":
    main()
