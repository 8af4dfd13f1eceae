"""What the serving benchmarks share (bench_serving.py, bench_serving_fraud.py): free ports, waiting
for a server, a keep-alive HTTP client, the open-loop request driver and percentile summaries.

The driver sends requests open-loop at a fixed rate: request i is due at start + i / rate and its
latency counts from that moment, so a slow answer that delays the next request shows up in the
next request's latency too (queueing included). With `connections` > 1 the requests are spread
over that many keep-alive connections, each in its own thread, so one slow answer does not hold
back requests due meanwhile (the server sees up to `connections` requests at once, as from that
many clients).
"""

from __future__ import annotations

import datetime as dt
import http.client
import socket
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, path: str, timeout: float = 120) -> None:
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


class Client:
    """One keep-alive connection; reconnects once if the server closed it while idle (uvicorn
    closes idle keep-alive connections after 5 s, e.g. while the other path's round runs)."""

    def __init__(self, port: int, timeout: float | None = None):
        self.port = port
        self.timeout = timeout
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def post(self, path: str, body: str | bytes) -> bytes:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, {"content-type": "application/json"})
                response = self.conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(payload)
        return payload

    def close(self) -> None:
        self.conn.close()


def run_rate(
    send: Callable[[int], None], ids: np.ndarray, rate: float, seconds: float, rng
) -> tuple[list[float], list[float]]:
    """One connection, open loop: request i is due at start + i / rate. Returns latency = done -
    due (what a caller at that rate sees, queueing included) and service time = done - sent, both
    in ms."""
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


def run_rate_parallel(
    senders: list[Callable[[int], None]],
    ids: np.ndarray,
    rate: float,
    seconds: float,
    rng,
    give_up_after: float | None = None,
) -> tuple[list[float], list[float], int]:
    """`run_rate` over len(senders) connections (one thread each, request i on connection
    i mod k, each connection still one request at a time). A connection that falls more than
    `give_up_after` seconds behind its schedule stops sending (a path that cannot keep up would
    otherwise queue for ever); returns (latency, service time, requests not sent)."""
    if len(senders) == 1 and give_up_after is None:
        latency, service = run_rate(senders[0], ids, rate, seconds, rng)
        return latency, service, 0
    n = int(rate * seconds)
    interval = 1.0 / rate
    picks = rng.choice(ids, size=n)
    k = len(senders)
    results: list[tuple[list[float], list[float], int]] = [([], [], 0)] * k
    start = time.perf_counter() + 0.05

    def worker(w: int) -> None:
        latencies, service, skipped = [], [], 0
        for i in range(w, n, k):
            due = start + i * interval
            now = time.perf_counter()
            if give_up_after is not None and now - due > give_up_after:
                skipped = len(range(i, n, k))
                break
            if due > now:
                time.sleep(due - now)
            sent = time.perf_counter()
            senders[w](int(picks[i]))
            done = time.perf_counter()
            latencies.append((done - due) * 1000)
            service.append((done - sent) * 1000)
        results[w] = (latencies, service, skipped)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(k)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (
        [x for r in results for x in r[0]],
        [x for r in results for x in r[1]],
        sum(r[2] for r in results),
    )


def summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "n": 0}
    q = np.percentile(samples, [50, 90, 99])
    return {
        "p50_ms": round(float(q[0]), 3),
        "p90_ms": round(float(q[1]), 3),
        "p99_ms": round(float(q[2]), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "n": len(samples),
    }


def median_of_rounds(rounds: list[tuple[list, list]], which: int) -> dict[str, float]:
    """Per-round summaries of latency (`which` 0) or service time (1), and their medians."""
    per_round = [summary(r[which]) for r in rounds if r[which]]
    if not per_round:
        return {"p50_ms": None, "p99_ms": None, "p99_ms_by_round": []}
    return {
        "p50_ms": round(statistics.median(s["p50_ms"] for s in per_round), 3),
        "p99_ms": round(statistics.median(s["p99_ms"] for s in per_round), 3),
        "p99_ms_by_round": [s["p99_ms"] for s in per_round],
    }


def load_average() -> list[float]:
    import os

    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc), all its threads."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _ServiceViews:
    """A feature store seen through one feature service: `list_feature_views` returns only the
    views that service reads (everything else is the store's)."""

    def __init__(self, store, service: str):
        self._store = store
        wanted = {p.name for p in store.get_feature_service(service).feature_view_projections}
        self._views = [v for v in store.list_feature_views() if v.name in wanted]

    def list_feature_views(self):
        return self._views

    def __getattr__(self, name):
        return getattr(self._store, name)


def bulk_materialize_service(store, service: str, start, end) -> dict[str, int]:
    """Bulk-materialize only the views of `service` (a synthetic customer table has no orders for
    the other models' views to read)."""
    from mlops_assets.features.bulk import bulk_materialize

    return bulk_materialize(_ServiceViews(store, service), start, end)


def synthetic_champion_online(customers: int, settings, res, data, config):
    """The online store filled with `customers` (a synthetic gold table) and an MLflow champion
    trained on synthetic rows; returns the store, the registry, the champion's version and its
    fitted pipeline."""

    from mlops_assets.features.store import apply_feature_repo
    from mlops_assets.testing import (
        SYNTHETIC_LAST,
        register_synthetic_champion,
        synthetic_gold_table,
    )

    print(f"setup: {customers:,} customers in the online store, one MLflow champion")
    synthetic_gold_table(customers, 1, settings.gold_dir / "customer_features.parquet")
    store = res.feature_store.store()
    apply_feature_repo(store)
    start = dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=1)
    bulk_materialize_service(store, config.feature_service, start, start + dt.timedelta(days=2))
    registry = res.model_registry.registry()
    version, model = register_synthetic_champion(registry, config, data / "train_set")
    return store, registry, version, model
