"""`bench_serving.py --with-fraud`: fraud online beside churn, side by side in one run.

One local model server process hosts both champions (trained on a shop built with dbt: gold
customer and order features, churn and fraud labels). One-row requests go at a fixed rate, open
loop, to churn (by customer_id) and to fraud (by order_id and customer_id: an order lookup and a
customer lookup), the models alternating in rounds after a warm-up so both see the same machine.
The figures: per model p50/p99 of latency and service time, pooled and as the median over rounds,
and fraud p99 / churn p99 (the target: within 1.5x).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import numpy as np
from serving_harness import Client, free_port, load_average, median_of_rounds, run_rate, summary

DAYS = 150
ONLINE_DAYS = 14  # materialized: the last two weekly customer snapshots and the last day's orders


def main_fraud(args, results: Path) -> None:
    from mlops_assets.resources import open_resources
    from mlops_assets.testing import scratch_settings, small_world

    data = results / "serving_fraud_data"
    shutil.rmtree(data, ignore_errors=True)
    world = small_world(args.fraud_customers, days=DAYS)
    with scratch_settings(data, world) as settings, open_resources(settings) as res:
        report = bench_fraud(args, settings, res, data)
    print(json.dumps(report, indent=2))
    for model in ("churn", "fraud"):
        if report[model]["inference_log_rows"] != report[model]["requests"]:
            print(f"INFERENCE LOG MISMATCH for {model}: {report[model]}")
    results.mkdir(parents=True, exist_ok=True)
    with (results / "serving_fraud.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)


def setup_shop(settings, res, data: Path) -> dict:
    """The shop built and its recent days online; both champions registered. Returns the
    configs (churn on a free port), the request time and the keys to ask for."""
    from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
    from mlops_assets.features.store import materialize_window
    from mlops_assets.model_config import model_configs
    from mlops_assets.testing import build_shop, register_quick_champion

    started = time.perf_counter()
    print(f"setup: a shop of {settings.world().n_customers:,} customers, {DAYS} days (dbt build)")
    store = build_shop(settings, days=DAYS)
    end = dt.datetime.combine(settings.world().start_date, dt.time(), tzinfo=dt.UTC)
    end += dt.timedelta(days=DAYS)
    materialize_window(store, end - dt.timedelta(days=ONLINE_DAYS), end)
    configs = model_configs()
    registry = res.model_registry.registry()
    for name in ("churn", "fraud"):
        labels = Labels.of(configs[name])
        folder = data / f"{name}_set"
        build_training_set(store, labels, load_labels(res.warehouse, labels), folder)
        register_quick_champion(registry, configs[name], folder, actor="bench")
    orders = res.warehouse.query(
        "select order_id, customer_id, event_timestamp from gold.order_features "
        "where cast(event_timestamp as date) = "
        "(select max(cast(event_timestamp as date)) from gold.order_features)"
    )
    request_ts = dt.datetime.fromisoformat(str(orders["event_timestamp"].max()))
    customers = res.warehouse.query(
        "select distinct customer_id from gold.customer_features where event_timestamp = "
        "(select max(event_timestamp) from gold.customer_features)"
    )
    churn = configs["churn"]
    serving = churn.serving.model_copy(update={"port": free_port()})
    print(f"setup: {time.perf_counter() - started:.0f} s; {len(orders)} orders on the last day")
    return {
        "registry": registry,
        "churn": churn.model_copy(update={"serving": serving}),
        "fraud": configs["fraud"],
        "request_ts": request_ts.replace(tzinfo=dt.UTC).isoformat(),
        "pairs": orders[["order_id", "customer_id"]].to_numpy(dtype=np.int64),
        "customers": customers["customer_id"].to_numpy(dtype=np.int64),
    }


def bench_fraud(args, settings, res, data: Path) -> dict:
    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.serving.rollout import deploy

    shop = setup_shop(settings, res, data)
    churn, fraud, request_ts = shop["churn"], shop["fraud"], shop["request_ts"]
    deploy(shop["registry"], res.deployer, churn, actor="bench", reason="benchmark")
    deploy(shop["registry"], res.deployer, fraud, actor="bench", reason="benchmark")
    pids = {m.name: res.deployer.state(m.name)["pid"] for m in (churn, fraud)}
    assert len(set(pids.values())) == 1, f"not one server process: {pids}"
    client = Client(churn.serving.port)
    sent = {"churn": 0, "fraud": 0}
    customers, pairs = shop["customers"], shop["pairs"]

    def ask_churn(customer: int) -> None:
        body = {"instances": [{"customer_id": customer, "request_ts": request_ts}]}
        client.post(f"/v1/models/{churn.name}:predict", json.dumps(body))
        sent["churn"] += 1

    def ask_fraud(row: int) -> None:
        order, customer = (int(v) for v in pairs[row])
        body = {
            "instances": [{"order_id": order, "customer_id": customer, "request_ts": request_ts}]
        }
        client.post(f"/v1/models/{fraud.name}:predict", json.dumps(body))
        sent["fraud"] += 1

    paths = {"churn": (ask_churn, customers), "fraud": (ask_fraud, np.arange(len(pairs)))}
    try:
        rounds = alternate_rounds(args, paths)
    finally:
        res.deployer.stop()  # drains and flushes both inference logs
    catalog = res.lakehouse.catalog()
    logged = {
        name: len(
            catalog.load_table(INFERENCE_LOG.name(name))
            .scan(selected_fields=("request_id",))
            .to_arrow()
        )
        for name in ("churn", "fraud")
    }
    return fraud_figures(args, rounds, sent, logged, len(pairs), pids["fraud"])


def alternate_rounds(args, paths: dict) -> dict[str, list[tuple[list, list]]]:
    """Warm-up, then `args.rounds` rounds of each model at the fixed rate, alternating (churn,
    fraud, churn, ...); per model, per round: (latency, service time) samples."""
    rng = np.random.default_rng(0)
    for send, ids in paths.values():
        run_rate(send, ids, args.rate, 2, rng)
    rounds: dict[str, list[tuple[list, list]]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, (send, ids) in paths.items():
            rounds[name].append(run_rate(send, ids, args.rate, args.seconds, rng))
    return rounds


def fraud_figures(args, rounds, sent, logged, orders: int, pid: int) -> dict:
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "fraud_beside_churn",
        "customers": args.fraud_customers,
        "last_day_orders": orders,
        "rate_rps": args.rate,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "server_pid": pid,
        "load_average_1_5_15": load_average(),
    }
    for name, model_rounds in rounds.items():
        latency = [x for r in model_rounds for x in r[0]]
        service = [x for r in model_rounds for x in r[1]]
        report[name] = {
            "latency": summary(latency),
            "service_time": summary(service),
            "latency_median_of_rounds": median_of_rounds(model_rounds, 0),
            "service_time_median_of_rounds": median_of_rounds(model_rounds, 1),
            "requests": sent[name],
            "inference_log_rows": logged[name],
        }
    for kind in ("latency", "service_time"):
        churn, fraud = report["churn"], report["fraud"]
        median = f"{kind}_median_of_rounds"
        report[f"p99_ratio_fraud_over_churn_{kind}"] = {
            "pooled": round(fraud[kind]["p99_ms"] / churn[kind]["p99_ms"], 2),
            "median_of_rounds": round(fraud[median]["p99_ms"] / churn[median]["p99_ms"], 2),
        }
    report["target_p99_ratio_max"] = 1.5
    return report
