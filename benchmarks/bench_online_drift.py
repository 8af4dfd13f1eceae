"""Online drift replay: clean traffic at 200 rps through the real churn model server, then drifted
traffic; the real online drift sensor (the code location's, on a real DagsterInstance) evaluated
every SENSOR_INTERVAL_S as the daemon would. Measured per run: seconds from the switch to the
first failing check ("detected") and from detection to the retraining RunRequest ("launch");
medians of --runs. Then false alarms: the pure core over >= 1,000 windows drawn from the clean
requests the server logged (bootstrap windows of window_rows rows), stepped through the decision.

The world: a synthetic gold table of 2 x --customers customers in the online store; customers
1..N are the clean population, N+1..2N a drifted one (spend and order counts x4, half of them on a
new acquisition channel): switching traffic to them is a drift of the requests' features, as a
shift in who calls the service would be. The champion's reference is the clean population as
the server sees it (a calibration pass over 20,000 clean customers, scored by the champion): the
synthetic training set the champion is fit on is drawn from another generator than the synthetic
gold table, so its training rows would not describe clean traffic in this world.

    .venv/bin/python benchmarks/bench_online_drift.py     # 3 runs, 40 s clean each (~6 min)
    # ~1,000 live clean windows in one run, the log's upkeep every 10 min as scheduled (~36 min):
    .venv/bin/python benchmarks/bench_online_drift.py --runs 1 --clean-seconds 2000 --maintain-every 600
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_harness import Client, bulk_materialize_service, free_port, wait_ready

RESULTS = Path(__file__).resolve().parent / "results"

SENSOR = "churn_online_drift_sensor"
DRIFTED = ("spend_30d_usd", "spend_90d_usd", "order_count_30d", "order_count_90d")


def drifted_gold(customers: int, path: Path) -> None:
    """2 x `customers` synthetic customers; the second half drifted."""
    import pandas as pd

    from mlops_assets.testing import synthetic_gold_table

    synthetic_gold_table(2 * customers, 1, path)
    gold = pd.read_parquet(path)
    late = gold["customer_id"] > customers
    for column in DRIFTED:
        gold.loc[late, column] = gold.loc[late, column] * 4
    gold.loc[late & (gold["customer_id"] % 2 == 0), "acquisition_channel"] = "tiktok"
    gold.to_parquet(path, index=False)


def setup(args, settings, res, config):
    from mlops_assets.features.store import apply_feature_repo
    from mlops_assets.serving.rollout import deploy
    from mlops_assets.testing import SYNTHETIC_LAST, register_synthetic_champion

    drifted_gold(args.customers, settings.gold_dir / "customer_features.parquet")
    store = res.feature_store.store()
    apply_feature_repo(store)
    start = dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=1)
    bulk_materialize_service(store, config.feature_service, start, start + dt.timedelta(days=2))
    registry = res.model_registry.registry()
    version, model = register_synthetic_champion(registry, config, settings.data_dir / "train")
    deploy(registry, res.deployer, config, actor="bench", reason="online drift benchmark")
    return version, [str(c) for c in model.feature_names_in_]


def calibrate(client, config, settings, catalog, version, columns, customers, request_ts):
    """The reference: 20,000 clean customers through the server, read back from the inference
    log (features as served, the champion's scores), in the reference cache of the version."""
    import pandas as pd

    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.monitoring.online_drift import SCORE, features_of

    ids = np.random.default_rng(1).choice(
        np.arange(1, customers + 1), min(20_000, customers), replace=False
    )
    for chunk in np.array_split(ids, 40):
        rows = [{"customer_id": int(c), "request_ts": request_ts} for c in chunk]
        client.post(f"/v1/models/{config.name}:predict", json.dumps({"instances": rows}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            table = catalog.load_table(INFERENCE_LOG.name(config.name))
            if len(table.scan(selected_fields=("request_id",)).to_arrow()) >= len(ids):
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.5)
    logged = table.scan(selected_fields=("features", "score", "model_version")).to_pandas()
    frame = features_of(logged)
    reference = frame[columns].assign(**{SCORE: frame[SCORE]})
    folder = settings.data_dir / "monitoring" / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(folder / f"{config.name}-v{version}.parquet", index=False)
    return pd.DataFrame(reference)


class Sender(threading.Thread):
    """Open-loop one-customer requests at `rate`, from the clean ids until `switch()`, then from
    the drifted ones."""

    def __init__(self, port: int, config, rate: float, customers: int, request_ts: str):
        super().__init__(daemon=True)
        self.client, self.path = Client(port), f"/v1/models/{config.name}:predict"
        self.rate, self.customers, self.request_ts = rate, customers, request_ts
        self.drifted = False
        self.stop = threading.Event()
        self.sent = 0
        self.started = time.perf_counter()

    def run(self) -> None:
        rng = np.random.default_rng()
        interval = 1.0 / self.rate
        while not self.stop.is_set():
            due = self.started + self.sent * interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            offset = self.customers if self.drifted else 0
            customer = int(rng.integers(1, self.customers + 1)) + offset
            body = {"instances": [{"customer_id": customer, "request_ts": self.request_ts}]}
            self.client.post(self.path, json.dumps(body))
            self.sent += 1


UPKEEP_KEYS = "files_rewritten commit_attempts writers_paused snapshots_before snapshots_expired"


class Upkeep(threading.Thread):
    """The maintenance asset's own code (expiry, compaction, rows check) every `every` s."""

    def __init__(self, catalog, config, every: float):
        super().__init__(daemon=True)
        self.catalog, self.config, self.every = catalog, config, every
        self.stop = threading.Event()
        self.runs: list[dict] = []

    def run(self) -> None:
        from mlops_assets.defs.serving.maintenance import upkeep
        from mlops_assets.lakehouse.tables import INFERENCE_LOG

        while not self.stop.wait(self.every):
            began = time.monotonic()
            try:
                table = self.catalog.load_table(INFERENCE_LOG.name(self.config.name))
                materialized, check = list(upkeep(table, self.config.serving))
            except Exception as err:  # reported, and the run goes on as a schedule's would
                self.runs.append({"error": f"{type(err).__name__}: {err}"[:300]})
                continue
            meta = {k: getattr(v, "value", v) for k, v in materialized.metadata.items()}
            kept = {"s": round(time.monotonic() - began, 2), "rows_kept": bool(check.passed)}
            self.runs.append(kept | {k: meta.get(k) for k in UPKEEP_KEYS.split()})


class Ticker:
    """The code location's sensor on a fresh instance, its cursor at the log's current end (a
    sensor that has caught up: earlier runs' rows are not this run's traffic)."""

    def __init__(self, config):
        import dagster as dg

        from mlops_assets.definitions import load
        from mlops_assets.lakehouse.tables import INFERENCE_LOG

        defs = load()
        self.sensor = defs.get_sensor_def(SENSOR)
        self.resources = {k: defs.resources[k] for k in ("lakehouse", "model_registry")}
        self.instance = dg.DagsterInstance.ephemeral()
        table = self.resources["lakehouse"].catalog().load_table(INFERENCE_LOG.name(config.name))
        stream = {"snapshot_id": table.current_snapshot().snapshot_id, "last_seen_us": None}
        self.cursor = json.dumps({"stream": stream})

    def tick(self):
        """(check results passed?, run requests) of one evaluation, recorded as the daemon does."""
        import dagster as dg

        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        )
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        return [e.passed for e in data.asset_events], list(data.run_requests or [])


def replay(args, config, port, request_ts, catalog) -> dict:
    """One run: clean traffic, switch, the sensor every SENSOR_INTERVAL_S until the retraining
    is requested (or --timeout); the log's upkeep meanwhile with --maintain-every."""
    from mlops_assets.defs.tags import SENSOR_INTERVAL_S

    ticker = Ticker(config)
    sender = Sender(port, config, args.rate, args.customers, request_ts)
    sender.start()
    upkeep = Upkeep(catalog, config, args.maintain_every)
    if args.maintain_every > 0:
        upkeep.start()
    t0, wall0, switch_wall = time.monotonic(), time.time(), None
    at = {"switch": None, "detected": None, "launched": None}
    clean, drifted, ticks, request = [], [], [], None
    while time.monotonic() - t0 < args.clean_seconds + args.timeout and request is None:
        if at["switch"] is None and time.monotonic() - t0 >= args.clean_seconds:
            sender.drifted, at["switch"], switch_wall = True, time.monotonic(), time.time()
        began = time.monotonic()
        checks, requests = ticker.tick()
        ticks.append(time.monotonic() - began)
        if at["switch"] is None:
            clean += [*checks, *[False for _ in requests]]  # a clean launch is a false alarm
        else:
            drifted += checks
            if False in checks and at["detected"] is None:
                at["detected"] = time.monotonic()
            if requests:
                at["launched"], request = time.monotonic(), requests[0]
        if request is None:
            time.sleep(max(0.0, SENSOR_INTERVAL_S - (time.monotonic() - began)))
    sender.stop.set()
    upkeep.stop.set()
    sender.join(10)
    if upkeep.is_alive():  # a started upkeep finishes its run
        upkeep.join(600)
    return {
        "log_upkeep": upkeep.runs,
        "detected_s": _since(at["detected"], at["switch"]),
        "launch_after_detection_s": _since(at["launched"], at["detected"]),
        "clean_windows": len(clean),
        "clean_windows_failed": clean.count(False),
        "drift_windows_until_launch": len(drifted),
        "sent_rps": round(sender.sent / (time.perf_counter() - sender.started), 1),
        "tick_p50_s": round(statistics.median(ticks), 3),
        "tick_max_s": round(max(ticks), 3),
        "run_key": request.run_key if request else None,
        "reason": request.tags["mlops/reason"][:200] if request else None,
        "clean_span_us": [int(wall0 * 1e6), int((switch_wall or time.time()) * 1e6)],
    }


def _since(later, earlier) -> float | None:
    return None if later is None or earlier is None else round(later - earlier, 2)


def false_alarms(settings, config, version, windows: int, before_us: list[int]) -> dict:
    """The pure core over `windows` bootstrap windows of the clean requests the server logged
    (each run's rows before its switch, calibration rows left out), stepped through decide."""
    import pandas as pd

    from mlops_assets.lakehouse.tables import INFERENCE_LOG
    from mlops_assets.monitoring import online_drift as od
    from mlops_assets.resources import open_resources

    with open_resources(settings) as res:
        table = res.lakehouse.catalog().load_table(INFERENCE_LOG.name(config.name))
        logged = table.scan(selected_fields=("features", "score", "model_version", "requested_at"))
        logged = logged.to_pandas()
    epoch = pd.Timestamp(0, tz="UTC")
    stamps = (logged["requested_at"] - epoch) // pd.Timedelta(microseconds=1)
    clean = pd.Series(False, index=logged.index)
    for start_us, switch_us in before_us:
        clean |= (stamps >= start_us) & (stamps < switch_us)
    rows = od.features_of(logged[clean].reset_index(drop=True))
    limits = od.OnlineLimits.of(config.monitoring)
    reference = od.Reference.of(
        pd.read_parquet(
            settings.data_dir / "monitoring" / "reference" / f"{config.name}-v{version}.parquet"
        ),
        limits,
    )
    rng = np.random.default_rng(3)
    state, breached, launches, psi_max, score_max = od.IncidentState(), 0, 0, 0.0, 0.0
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    for i in range(windows):
        window = rows.iloc[rng.integers(0, len(rows), limits.window_rows)]
        result = od.evaluate_window(reference, window, limits, version)
        breached += result.breached
        psi_max = max(psi_max, *result.psi.values())
        score_max = max(score_max, result.score_psi or 0.0)
        state, decision = od.decide(state, result, now + dt.timedelta(seconds=2 * i), None, limits)
        launches += decision.launch
    return {
        "windows": windows,
        "clean_logged_rows": len(rows),
        "breached_windows": breached,
        "launches": launches,
        "max_feature_psi": round(psi_max, 4),  # against psi_max (a drift also needs KS)
        "max_score_psi": round(score_max, 4),
        "ms_per_window": round((time.perf_counter() - started) * 1000 / windows, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000, help="clean (and drifted) ones")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clean-seconds", type=float, default=40.0)
    parser.add_argument("--timeout", type=float, default=180.0, help="drifted seconds at most")
    parser.add_argument("--windows", type=int, default=1000, help="clean windows replayed")
    parser.add_argument(
        "--maintain-every",
        type=float,
        default=0.0,
        help="seconds between runs of the inference log's upkeep during traffic (0: none)",
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    data = RESULTS / "online_drift_data"
    shutil.rmtree(data, ignore_errors=True)
    from mlops_assets.model_config import model_configs
    from mlops_assets.resources import open_resources
    from mlops_assets.testing import SYNTHETIC_LAST, scratch_settings
    from mlops_assets.world import World

    base = model_configs()["churn"]
    port = free_port()
    config = base.model_copy(update={"serving": base.serving.model_copy(update={"port": port})})
    request_ts = (
        dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC) + dt.timedelta(hours=12)
    ).isoformat()
    with scratch_settings(data, World()) as settings, open_resources(settings) as res:
        print(f"setup: {2 * args.customers:,} customers online (half drifted), a champion, server")
        version, columns = setup(args, settings, res, config)
        try:
            wait_ready(port, f"/v1/models/{config.name}")
            client = Client(port)
            catalog = res.lakehouse.catalog()
            calibrate(
                client, config, settings, catalog, version, columns, args.customers, request_ts
            )
            runs = []
            for k in range(args.runs):
                runs.append(replay(args, config, port, request_ts, catalog))
                print(f"run {k + 1}: {json.dumps(runs[-1])}")
        finally:
            res.deployer.stop(config.name)
        alarms = false_alarms(
            settings, config, version, args.windows, [r["clean_span_us"] for r in runs]
        )
    report = summarize(args, runs, alarms)
    print_table(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "online_drift.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    shutil.rmtree(data, ignore_errors=True)


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(args, runs: list[dict], alarms: dict) -> dict:
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rate_rps": args.rate,
        "runs": runs,
        "detected_s_median": _median([r["detected_s"] for r in runs]),
        "launch_after_detection_s_median": _median([r["launch_after_detection_s"] for r in runs]),
        "clean_windows_live": sum(r["clean_windows"] for r in runs),
        "clean_windows_live_failed": sum(r["clean_windows_failed"] for r in runs),
        "log_upkeep_runs": sum(len(r["log_upkeep"]) for r in runs),
        "log_upkeep_rows_kept": all(u.get("rows_kept") for r in runs for u in r["log_upkeep"]),
        "replayed_clean": alarms,
        "targets": {"detected_s": 120, "launch_after_detection_s": 30, "false_alarms": 0},
    }


def print_table(report: dict) -> None:
    replayed = report["replayed_clean"]
    rows = [
        ("drift detected after switch (s)", report["detected_s_median"], "<= 120"),
        ("retraining requested after detection (s)", report["launch_after_detection_s_median"], "<= 30"),
        ("clean windows live / failed", f"{report['clean_windows_live']} / {report['clean_windows_live_failed']}", "0 failed"),
        ("replayed clean windows / breached / launches",
         f"{replayed['windows']} / {replayed['breached_windows']} / {replayed['launches']}", "0 / 0"),
        ("log upkeep runs in traffic / rows kept",
         f"{report['log_upkeep_runs']} / {report['log_upkeep_rows_kept']}", ""),
        ("load average (1, 5, 15 min)", ", ".join(map(str, report["load_average"])), ""),
    ]  # fmt: skip
    print(f"\n{'measure (median of runs)':<46} {'value':>16}  target")
    for name, value, target in rows:
        print(f"{name:<46} {value!s:>16}  {target}")


if __name__ == "__main__":
    main()
