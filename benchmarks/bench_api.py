"""Control API benchmark: read latency under 50 concurrent clients.

`mlops api` runs as its own process (uvicorn, one worker, the embedded profile) on a scratch data
folder with a synthetic champion in MLflow. 50 clients, each on its own keep-alive connection,
send authenticated GETs in rotation over the read routes (models, a model, its versions, its
deployment, monitoring limits, tables), each client at --rate / 50 requests per second on a fixed
schedule; latency counts from each request's scheduled send time (a slow answer also delays the
client's next request). A run lasts --seconds after a warm-up; the figure is the median over
--runs runs of each run's p99.

    .venv/bin/python benchmarks/bench_api.py                        # 50 clients, 250 rps, 3 x 10 s
    .venv/bin/python benchmarks/bench_api.py --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SECRET = "bench-secret-" + "b" * 40
ROUTES = [
    "/v1/models",
    "/v1/models/churn",
    "/v1/models/churn/versions",
    "/v1/deployments/churn",
    "/v1/monitoring/churn/limits",
    "/v1/tables",
]


def _world(folder: Path) -> None:
    """A data folder with a registered champion (synthetic training set)."""
    from mlops_assets.model_config import model_configs
    from mlops_assets.testing import register_synthetic_champion, scratch_world

    with scratch_world(folder, 500) as (_, res):
        registry = res.model_registry.registry()
        register_synthetic_champion(registry, model_configs()["churn"], folder / "set", 5000)


def _start_api(folder: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MLOPS_DATA_DIR": str(folder / "data"),
        "MLOPS_API_JWT_SECRET": SECRET,
        "MLOPS_API_RATE_LIMIT": "100000000",
    }
    mlops = str(Path(sys.executable).parent / "mlops")
    return subprocess.Popen(
        [mlops, "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def _client(session, url, headers, start, interval, seconds, offset, latencies, errors):
    n = 0
    while True:
        scheduled = start + n * interval
        if scheduled - start > seconds:
            return
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        async with session.get(url + ROUTES[(offset + n) % len(ROUTES)], headers=headers) as r:
            await r.read()
            if r.status != 200:
                errors.append(r.status)
        latencies.append(time.perf_counter() - scheduled)
        n += 1


async def _run(port: int, token: str, clients: int, rate: float, seconds: float) -> dict:
    import aiohttp

    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    interval = clients / rate
    latencies: list[float] = []
    errors: list[int] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter() + 0.2
        tasks = [
            _client(
                session,
                url,
                headers,
                start + i * interval / clients,
                interval,
                seconds,
                i,
                latencies,
                errors,
            )
            for i in range(clients)
        ]
        await asyncio.gather(*tasks)
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "errors": len(errors),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def _wait_ready(port: int, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the API did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=250, help="requests per second, in total")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from mlops_assets.processes import stop_process_group
    from mlops_assets.settings import ApiSettings
    from mlops_assets.testing import free_port

    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        _world(folder)
        port = free_port()
        proc = _start_api(folder, port)
        try:
            _wait_ready(port)
            settings = ApiSettings(
                issuer="mlops-embedded",
                audience="mlops-api",
                algorithms=("HS256",),
                jwt_secret=SECRET,
            )
            from mlops_assets.api.auth import mint_token

            token = mint_token(settings, "bench", "retail", "viewer")
            asyncio.run(_run(port, token, args.clients, args.rate, 3))  # warm-up
            runs = [
                asyncio.run(_run(port, token, args.clients, args.rate, args.seconds))
                for _ in range(args.runs)
            ]
        finally:
            stop_process_group(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for i, run in enumerate(runs, 1):
        print(
            f"run {i}: "
            + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in run.items()
            )
        )
    median_p99 = statistics.median(r["p99_ms"] for r in runs)
    summary = {
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "clients": args.clients,
        "rate": args.rate,
        "seconds": args.seconds,
        "runs": runs,
        "median_p99_ms": median_p99,
        "median_p50_ms": statistics.median(r["p50_ms"] for r in runs),
    }
    print(f"median p99 over {len(runs)} runs: {median_p99:.2f} ms (target <= 20 ms)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "api.jsonl").open("a") as out:
        out.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
