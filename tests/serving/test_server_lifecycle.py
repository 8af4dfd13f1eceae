"""The model server's process lifecycle on the shared served shop: a clean shutdown flushes every
answered prediction to the Iceberg inference log, and a server started in standby (no model) takes
the first deployment instead of a second process being started."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.serving.rollout import deploy
from mlops_assets.testing import free_port
from tests.serving.serving_world import BASE, REQUEST_TS, V1, call, predict
from tests.serving.serving_world import customers as _customers

pytestmark = pytest.mark.slow


def test_every_online_prediction_reaches_the_inference_log_on_clean_shutdown(shop):
    registry, deployer, config = shop["registry"], shop["deployer"], shop["config"]
    ids = _customers(shop, 50)
    sent = {}
    for i in range(120):
        request_id = f"log-test-{i}"
        batch = ids[i % 10 : i % 10 + 1 + i % 4]
        # Every fifth request gives no request_ts: its predictions are as of their arrival.
        stamp = {"request_ts": REQUEST_TS} if i % 5 else {}
        body = {"instances": [{"customer_id": c, **stamp} for c in batch]}
        status, answer = call(f"{shop['url']}{V1}", body, {"x-request-id": request_id})
        assert status == 200
        sent[request_id] = answer["predictions"]
    assert deployer.stop(BASE.name)  # SIGTERM: drain, flush, exit
    catalog = shop["resources"].lakehouse.catalog()
    log = catalog.load_table(INFERENCE_LOG.name(BASE.name)).scan().to_pandas()
    ours = log[log["request_id"].str.startswith("log-test-")]
    assert len(ours) == sum(len(p) for p in sent.values())
    assert not ours.duplicated(["request_id", "customer_id"]).any()
    for request_id, predictions in list(sent.items())[:20]:
        rows = ours[ours["request_id"] == request_id].sort_values("customer_id")
        expected = pd.DataFrame(predictions).sort_values("customer_id")
        np.testing.assert_allclose(rows["score"], expected["score"], rtol=1e-12)
        assert rows["model_version"].tolist() == expected["model_version"].tolist()
        assert (rows["latency_ms"] > 0).all()
        features = json.loads(rows["features"].iloc[0])
        assert "lifetime_value_usd" in features and "days_since_last_order_now" in features
    # prediction_timestamp: the request_ts the client gave, else the arrival (requested_at).
    index = ours["request_id"].str.removeprefix("log-test-").astype(int)
    given, arrival = ours[index % 5 != 0], ours[index % 5 == 0]
    assert len(given) and len(arrival)
    assert (given["prediction_timestamp"] == pd.Timestamp(REQUEST_TS)).all()
    assert (given["requested_at"] > pd.Timestamp(REQUEST_TS)).all()  # the wall clock
    assert (arrival["prediction_timestamp"] == arrival["requested_at"]).all()
    deploy(registry, deployer, config, actor="test", reason="restart after the log test")


def test_a_standby_server_has_no_model_until_the_first_deployment_loads_it(shop):
    registry, deployer, config = shop["registry"], shop["deployer"], shop["config"]
    assert deployer.stop(BASE.name)
    standby = deployer.standby(config)
    deadline = time.monotonic() + 120
    while call_quietly(f"{shop['url']}/v2/health/live") != 200:
        assert time.monotonic() < deadline, "the standby server never came up"
        time.sleep(0.2)
    assert call(f"{shop['url']}/v2/models/{BASE.name}/ready")[0] == 404
    status, answer = call(f"{shop['url']}{V1}", {"instances": [{"customer_id": 1}]})
    assert status == 404 and BASE.name in answer["error"]
    # The deployment loads into the standby process instead of starting another one.
    deploy(registry, deployer, config, actor="test", reason="into the standby server")
    assert deployer.state(BASE.name)["pid"] == standby["pid"]
    assert "standby" not in deployer.state(BASE.name)
    versions = {r["model_version"] for r in predict(shop, _customers(shop, 300))["predictions"]}
    assert versions == {shop["champion"], shop["challenger"]}


def call_quietly(url: str) -> int | None:
    try:
        return call(url)[0]
    except OSError:
        return None


def test_a_starting_server_stops_on_sigterm_even_when_it_inherited_both_ignored(shop):
    """A shell's background job (`&`, nohup) starts with SIGINT ignored; Dagster maps SIGTERM to
    SIGINT's handler, so a process that ran Dagster there passes SIGTERM on ignored too. The server
    must take both back as soon as its command runs and keep them through start-up."""
    port = free_port()
    command = [sys.executable, "-m", "mlops_assets.cli", "serve", BASE.name, "--standby"]

    def inherit_both_ignored() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, "MLOPS_DATA_DIR": str(shop["settings"].data_dir)},
        preexec_fn=inherit_both_ignored,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sigterm = 1 << (signal.SIGTERM - 1)

    def ignores_sigterm() -> bool:
        status = Path(f"/proc/{process.pid}/status").read_text()
        return bool(int(re.search(r"SigIgn:\s+([0-9a-f]+)", status).group(1), 16) & sigterm)

    deadline = time.monotonic() + 120
    try:
        while ignores_sigterm():  # inherited: until the command takes it back
            assert process.poll() is None and time.monotonic() < deadline, "never took SIGTERM"
            time.sleep(0.01)
        # From then on, through the whole start-up (until it answers), SIGTERM is never ignored.
        while call_quietly(f"http://127.0.0.1:{port}/v2/health/live") != 200:
            assert process.poll() is None, "the server exited on its own"
            assert time.monotonic() < deadline, "the server never came up"
            assert not ignores_sigterm(), "the starting server ignored SIGTERM"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) is not None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
