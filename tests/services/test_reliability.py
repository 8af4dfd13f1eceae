"""Reliability on real services, each killed or restarted under load: SeaweedFS in the middle of a
batch-scoring commit, Redis under serving traffic, PostgreSQL under the Dagster daemon. Each test
starts its own server (free ports, scratch folders), stops it by PID and leaves nothing running.
(Twenty concurrent inference-log appends on the REST catalog: test_seaweed.py.)"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.features.store import apply_feature_repo, materialize_window, store_from_yaml
from mlops_assets.lakehouse.tables import PREDICTIONS
from mlops_assets.model_config import model_configs
from mlops_assets.processes import environment, stop_process_group
from mlops_assets.resources import RestCatalogResource
from mlops_assets.services import Seaweed, SeaweedPorts, seaweed_state, start_seaweed, stop_seaweed
from mlops_assets.serving.batch import score_days
from mlops_assets.testing import (
    SYNTHETIC_LAST,
    free_port,
    free_port_offset,
    register_synthetic_champion,
    scratch_world,
    synthetic_gold_table,
)
from tests.services.private_services import (
    dagster_home,
    feast_on_redis,
    kill,
    private_postgres,
    start_daemon,
    start_model_server,
    start_redis,
    successful_tick,
)
from tests.serving.serving_world import call, error_counts

pytestmark = pytest.mark.slow

BASE = model_configs()["churn"]
CUSTOMERS = 3000
# Three scored days, all within the feature views' TTL of the synthetic gold table's snapshots.
DAY1, DAY2, DAY3 = (SYNTHETIC_LAST + dt.timedelta(days=d) for d in range(3))
# No answer, even one that says the feature store is down, may take longer than this.
MAX_ANSWER_SECONDS = 3.0
POSTGRES_DOWN_SECONDS = 8.0


# -- 1. SeaweedFS killed in the middle of a batch-scoring commit -------------------------------------


@pytest.fixture(scope="module")
def scoring(tmp_path_factory) -> Any:
    """A SeaweedFS node (S3 + Iceberg REST catalog), gold features for CUSTOMERS customers and an
    MLflow champion: what `score_days` needs, without a full world."""
    root = tmp_path_factory.mktemp("reliability-batch")
    node = Seaweed(
        folder=root / "services" / "seaweedfs",
        access_key="tester",
        secret_key="tester-secret",
        ports=SeaweedPorts().shifted(free_port_offset()),
    )
    aws = {"AWS_ACCESS_KEY_ID": "tester", "AWS_SECRET_ACCESS_KEY": "tester-secret"}
    with (
        scratch_world(root, 500) as (settings, res),
        environment({**aws, "AWS_REGION": "us-east-1"}),
    ):
        synthetic_gold_table(CUSTOMERS, 2, settings.gold_dir / "customer_features.parquet")
        store = res.feature_store.store()
        apply_feature_repo(store)
        registry = res.model_registry.registry()
        version, _ = register_synthetic_champion(registry, BASE, root / "train_set", rows=5000)
        start_seaweed(node)
        try:
            yield {"node": node, "store": store, "registry": registry, "version": version}
        finally:
            stop_seaweed(node)
            assert seaweed_state(node) is None


def _catalog(node: Seaweed) -> Any:
    return RestCatalogResource(
        uri=node.iceberg_uri,
        warehouse=node.warehouse,
        credential=f"{node.access_key}:{node.secret_key}",
        s3_endpoint=node.s3_endpoint,
    ).catalog()


def _crash(node: Seaweed) -> None:
    """SIGKILL to the node's whole process group: no shutdown, no flush."""
    pid = seaweed_state(node)["pid"]
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _armed(catalog: Any, node: Seaweed, point: str, commit_seconds: float = 0.0) -> dict:
    """Make `catalog` crash the node at `point` of the next write: `upload` when the second data
    file is opened (the first one is in S3), `before_commit` after every data file is uploaded
    and just before the catalog commit, `in_commit` halfway through the commit request (of
    `commit_seconds`); any other point only counts and times. Returns what it saw."""
    seen: dict[str, Any] = {"data_files": 0, "commits": 0, "commit_seconds": 0.0, "timer": None}
    load_file_io, commit_table = catalog._load_file_io, catalog.commit_table

    def hooked_file_io(*args: Any, **kwargs: Any) -> Any:
        io = load_file_io(*args, **kwargs)
        new_output = io.new_output

        def opened(location: str) -> Any:
            seen["data_files"] += "/data/" in location
            if point == "upload" and "/data/" in location and seen["data_files"] == 2:
                _crash(node)
            return new_output(location)

        io.new_output = opened
        return io

    def hooked_commit(*args: Any, **kwargs: Any) -> Any:
        seen["commits"] += 1
        if point == "before_commit":
            _crash(node)
        elif point == "in_commit":
            seen["timer"] = threading.Timer(commit_seconds / 2, _crash, (node,))
            seen["timer"].start()
        started = time.monotonic()
        try:
            return commit_table(*args, **kwargs)
        finally:
            seen["commit_seconds"] = time.monotonic() - started

    catalog._load_file_io, catalog.commit_table = hooked_file_io, hooked_commit
    return seen


def _until_volumes_registered(node: Seaweed, timeout: float = 30.0) -> None:
    """Until the restarted node's master knows its volume server again. `start_seaweed` returns
    once S3 and the catalog answer, but for a second or two after a restart the master's topology
    is empty and every GetObject fails with INTERNAL_FAILURE (a gap in its readiness check)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{node.ports.master}/dir/status"
        with suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as response:
            if json.loads(response.read())["Topology"].get("DataCenters"):
                return
        time.sleep(0.1)
    raise TimeoutError(f"SeaweedFS's master knows no volume server {timeout:.0f}s after a restart")


def _days(node: Seaweed, name: str) -> tuple[int | None, dict[dt.date, set], int]:
    """(current snapshot id, {day: scored_at values}, rows) of the predictions table."""
    table = _catalog(node).load_table(name)
    rows = table.scan().to_pandas()
    assert not rows["prediction_id"].duplicated().any(), "a prediction is in the table twice"
    days = {day: set(group["scored_at"]) for day, group in rows.groupby("prediction_date")}
    counts = rows.groupby("prediction_date").size()
    assert (counts == CUSTOMERS).all(), f"a day is partial: {counts.to_dict()}"
    snapshot = table.current_snapshot()
    return (snapshot.snapshot_id if snapshot else None), days, len(rows)


@pytest.mark.parametrize("point", ["upload", "before_commit", "in_commit"])
def test_seaweedfs_killed_mid_commit_leaves_no_partial_snapshot_and_a_rerun_succeeds(
    scoring, point
):
    node, store, registry = scoring["node"], scoring["store"], scoring["registry"]
    config = BASE.model_copy(update={"name": f"churn_{point}"})  # a predictions table per case
    name = PREDICTIONS.name(config.name)
    catalog = _catalog(node)
    timing = _armed(catalog, node, "none")
    first = score_days(catalog, store, registry, config, [DAY1, DAY2])
    assert first["rows"] == 2 * CUSTOMERS
    before = _days(node, name)
    assert before[0] == first["snapshot_id"] and set(before[1]) == {DAY1, DAY2}

    catalog = _catalog(node)
    seen = _armed(catalog, node, point, timing["commit_seconds"])
    try:
        score_days(catalog, store, registry, config, [DAY2, DAY3])
        failed = None
    except Exception as err:  # whatever the dead node makes the client raise
        failed = err
    if seen["timer"] is not None:
        seen["timer"].join()
    assert seaweed_state(node) is None, "the node was not killed during the write"
    assert failed is not None or point == "in_commit", "the write succeeded on a dead node"
    # The overwrite is one commit (a crash before it: none was sent).
    assert seen["data_files"] == 2
    assert seen["commits"] == (0 if point == "upload" else 1)

    start_seaweed(node)  # the same folder and ports
    _until_volumes_registered(node)
    snapshot, days, rows = _days(node, name)
    if snapshot == before[0]:  # the write never landed: exactly the first run's rows
        assert days == before[1] and rows == 2 * CUSTOMERS
    else:  # only a commit in flight may have landed, and then completely
        assert point == "in_commit", f"a snapshot appeared though no commit was sent ({point})"
        assert set(days) == {DAY1, DAY2, DAY3} and rows == 3 * CUSTOMERS
        assert days[DAY1] == before[1][DAY1] and days[DAY2] != before[1][DAY2]

    again = score_days(_catalog(node), store, registry, config, [DAY2, DAY3])
    assert again["rows"] == 2 * CUSTOMERS and again["model_version"] == scoring["version"]
    snapshot, days, rows = _days(node, name)
    assert snapshot == again["snapshot_id"] and rows == 3 * CUSTOMERS
    assert set(days) == {DAY1, DAY2, DAY3} and days[DAY1] == before[1][DAY1]
    assert len(days[DAY2]) == 1 and days[DAY2] == days[DAY3] != before[1][DAY2]


# -- 2. Redis restarted under serving traffic ----------------------------------------------------------

V2 = f"/v2/models/{BASE.name}/infer"


class Traffic(threading.Thread):
    """V2 requests, one after another, until stopped: (sent, answered, status, answer) each."""

    def __init__(self, url: str, ids: list[int]):
        super().__init__(daemon=True)
        request_ts = dt.datetime.combine(DAY1, dt.time(12), tzinfo=dt.UTC).isoformat()
        self.url, self.answers, self.halt = url, [], threading.Event()
        self.body = {
            "inputs": [
                {"name": "customer_id", "shape": [len(ids)], "datatype": "INT64", "data": ids},
                {"name": "request_ts", "shape": [len(ids)], "datatype": "BYTES"}
                | {"data": [request_ts] * len(ids)},
            ]
        }

    def run(self) -> None:
        while not self.halt.is_set():
            sent = time.monotonic()
            try:
                status, answer = call(self.url + V2, self.body)
            except OSError as err:  # no answer at all (a hang past call's timeout, a reset)
                status, answer = None, repr(err)
            self.answers.append((sent, time.monotonic(), status, answer))
            time.sleep(0.02)

    def until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.answers):
            assert time.monotonic() < deadline and self.is_alive(), self.answers[-3:]
            time.sleep(0.05)


# The views of the synthetic customer table (churn_v1's); the order views have no table here.
CUSTOMER_VIEWS = ["customer_profile", "customer_orders", "customer_support"]


def _shop_on_redis(tmp_path: Path, port: int, settings: Any, res: Any) -> tuple:
    """Gold features materialized into the Redis on `port` and a champion: (store, window, feast
    config path, version)."""
    synthetic_gold_table(200, 2, settings.gold_dir / "customer_features.parquet")
    feast = feast_on_redis(tmp_path, port)
    store = store_from_yaml(feast)
    apply_feature_repo(store)
    start = dt.datetime.combine(SYNTHETIC_LAST, dt.time(), tzinfo=dt.UTC)
    window = (start - dt.timedelta(days=8), start + dt.timedelta(days=1))
    materialize_window(store, *window, views=CUSTOMER_VIEWS)
    registry = res.model_registry.registry()
    version, _ = register_synthetic_champion(registry, BASE, tmp_path / "set", 3000)
    return store, window, feast, version


def test_redis_restarted_under_traffic_gives_503s_then_the_same_server_recovers(tmp_path):
    port = free_port()
    redis = start_redis(port, tmp_path / "redis.log")
    server = traffic = None
    try:
        with scratch_world(tmp_path, 500) as (settings, res):
            store, window, feast, version = _shop_on_redis(tmp_path, port, settings, res)
            server, url = start_model_server(settings, res, feast, version)
            pid = server.pid
            traffic = Traffic(url, [1, 2, 3, 50, 200])
            traffic.start()
            traffic.until(lambda a: len(a) >= 10, 60)

            killed = time.monotonic()
            kill(redis)  # a crash: Redis keeps nothing (no RDB, no AOF)

            def outage(answers: list) -> list:  # every 503 (one sent just before may be one)
                return [x for x in answers if x[2] == 503]

            traffic.until(lambda a: len(outage(a)) >= 2 and time.monotonic() > killed + 2, 60)
            restarted = time.monotonic()
            redis = start_redis(port, tmp_path / "redis.log")
            # The data is gone with the old process.
            materialize_window(store, *window, views=CUSTOMER_VIEWS)
            reloaded = time.monotonic()
            traffic.until(lambda a: sum(x[0] > reloaded for x in a) >= 10, 60)
            traffic.halt.set()
            traffic.join(30)
            assert server.poll() is None and server.pid == pid  # never restarted
            metrics = call(f"{url}/metrics")[1]
    finally:
        if traffic is not None:
            traffic.halt.set()
        if server is not None:
            stop_process_group(server)
        kill(redis)
    answers = traffic.answers
    slow = [(round(b - a, 1), s) for a, b, s, _ in answers if b - a > MAX_ANSWER_SECONDS]
    assert not slow, f"answers slower than {MAX_ANSWER_SECONDS}s: {slow}"
    assert {s for _, _, s, _ in answers} <= {200, 400, 503}, [x[2:] for x in answers]
    assert all(s == 200 for _, answered, s, _ in answers if answered < killed)
    down = [x for x in answers if x[1] < restarted and x[0] > killed]
    assert len(down) >= 2 and all(s == 503 for _, _, s, _ in down), [x[2:] for x in down]
    for _, _, _, answer in outage(answers):
        assert answer["reason"] == "feature_store_unavailable", answer
        assert answer["error"].startswith("feature store unavailable: the redis online store")
        assert "Traceback" not in answer["error"]
    # Between the restart and the new materialization Redis is empty: customers are unknown (400).
    between = [x for x in answers if x[1] > restarted and x[0] < reloaded and x[2] == 400]
    assert all(x[3]["reason"] == "unknown_customer" for x in between), between
    after = [x for x in answers if x[0] > reloaded]
    assert len(after) >= 10 and all(s == 200 for _, _, s, _ in after), [x[2:] for x in after]
    assert {o["name"] for o in after[-1][3]["outputs"]} >= {"score", "model_version"}
    assert error_counts(metrics, BASE.name)["feature_store_unavailable"] == len(outage(answers))
    assert "Traceback" not in (settings.data_dir / "server.log").read_text()


# -- 3. The Dagster daemon across a PostgreSQL restart ------------------------------------------------


def _wait_for(instance: Any, daemon: Any, after: float, timeout: float) -> tuple[Any, list]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "the Dagster daemon exited"
        found = successful_tick(instance, after)
        if found is not None:
            return found
        time.sleep(1)
    raise TimeoutError(f"no successful schedule tick after {after} within {timeout:.0f}s")


def test_the_dagster_daemon_survives_a_postgres_restart_and_the_next_tick_runs(tmp_path):
    from dagster import DagsterInstance

    with private_postgres(free_port()) as cluster:
        home = dagster_home(tmp_path / "dagster_home", cluster)
        daemon = start_daemon(home)
        try:
            with DagsterInstance.from_config(str(home)) as instance:
                first, _ = _wait_for(instance, daemon, 0.0, 150)
                postmaster = cluster.pid()
                # A restart with the database away for a while: the daemon's loops meet it down.
                cluster.pg_ctl("stop", "-m", "fast")
                time.sleep(POSTGRES_DOWN_SECONDS)
                cluster.pg_ctl("start")
                restarted = time.time()
                assert cluster.pid() not in (None, postmaster), "PostgreSQL did not restart"
                tick, runs = _wait_for(instance, daemon, restarted, 150)
                assert tick.timestamp > first.timestamp and len(runs) == 1
                assert runs[0].job_name == "heartbeat"
                beats = instance.get_daemon_heartbeats()
                assert beats and all(b.timestamp > restarted for b in beats.values()), beats
            assert daemon.poll() is None  # the same process throughout
        finally:
            stop_process_group(daemon)
    # The daemon met the database down (and said so), and carried on.
    assert "Retrying failed database connection" in (home / "daemon.log").read_text()
