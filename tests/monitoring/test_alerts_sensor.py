"""The alert sensor of the code location, evaluated against a real DagsterInstance after real
events (check evaluations materialized on it, runs of the location's retraining and rollout jobs)
and against a real local model server's /metrics, posting to a real local webhook."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request

import dagster as dg
import pytest

from mlops_assets.defs.keys import (
    dataset_run_config,
    deployment_key,
    monitor_key,
    promotion_key,
)
from mlops_assets.defs.monitoring.alerts import ALERT_SENSOR, GATE_CHECK, ONLINE_DRIFT
from mlops_assets.defs.tags import TRIGGER_TAG
from mlops_assets.model_config import model_configs
from mlops_assets.processes import environment
from mlops_assets.serving.deployers import LocalDeployer
from mlops_assets.testing import free_port, scratch_settings, small_world
from tests.monitoring.webhook_receiver import refused_url, webhook_receiver

CHURN = model_configs()["churn"]
UI = "http://dagster.test:3000"


def _failing_check_asset(key: dg.AssetKey, check: str, passed: bool = False):
    """A stand-in for a monitor or the gate: same asset key and check name, a fixed result."""

    @dg.asset(key=key, check_specs=[dg.AssetCheckSpec(check, asset=key)])
    def stand_in():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(
            check_name=check, passed=passed, metadata={"psi": 0.41, "windows": 3}
        )

    return stand_in


class Ticks:
    """The location's alert sensor, ticked like the daemon does: the cursor carried over."""

    def __init__(self, instance: dg.DagsterInstance, data_dir):
        from mlops_assets.definitions import load
        from mlops_assets.resources import resources_for
        from mlops_assets.settings import get_settings

        self.sensor = load().get_sensor_def(ALERT_SENSOR)
        self.instance, self.cursor = instance, None
        self.deployer = LocalDeployer(data_dir=str(data_dir))
        self.registry = resources_for(get_settings().env)["model_registry"]

    def tick(self) -> str:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"deployer": self.deployer, "model_registry": self.registry},
        )
        data = self.sensor.evaluate_tick(context)
        assert not data.run_requests
        self.cursor = data.cursor
        return data.skip_message


@pytest.fixture
def world(tmp_path):
    """A scratch data folder, alerts pointed at a live local webhook, a real test instance."""
    with webhook_receiver() as hook:
        variables = {"MLOPS_ALERTS_WEBHOOK_URL": hook.url, "MLOPS_ALERTS_UI_URL": UI}
        with (
            environment(variables),
            scratch_settings(tmp_path / "data", small_world(200)),
            dg.instance_for_test() as instance,
        ):
            yield hook, instance, Ticks(instance, tmp_path / "data")


def test_check_failures_and_runs_become_one_alert_each(world):
    hook, instance, ticks = world
    assert "0 new alert(s)" in ticks.tick()
    drift = _failing_check_asset(
        monitor_key(CHURN, "feature_drift"), "feature_drift_within_thresholds"
    )
    online = _failing_check_asset(monitor_key(CHURN, ONLINE_DRIFT[0]), ONLINE_DRIFT[1])
    gate = _failing_check_asset(promotion_key(CHURN), GATE_CHECK)
    result = dg.materialize([drift, online, gate], instance=instance)
    assert result.success
    # A retraining run as the sensors create them (the location's real job), and a promote run
    # of the real rollout job that fails (empty registry): a failed rollout is no alert.
    from mlops_assets.definitions import load

    defs = load()
    retrain = instance.create_run_for_job(
        defs.resolve_job_def("retrain_churn"),
        run_config=dataset_run_config(CHURN, dt.date(2025, 5, 1)),
        tags={TRIGGER_TAG: "online_drift", "mlops/reason": "PSI 0.41 on 3 windows"},
    )
    promote = defs.resolve_job_def("promote_churn").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not promote.success

    message = ticks.tick()
    assert "4 new alert(s)" in message and "sent 4" in message, message
    posts = {p["blocks"][0]["text"]["text"]: p for p in hook.posts}
    assert set(posts) == {
        "churn: drift detected (feature_drift)",
        "churn: drift detected (online_drift)",
        "churn: the candidate failed the promotion gate",
        "churn: retraining launched (trigger: online_drift)",
    }
    launched = posts["churn: retraining launched (trigger: online_drift)"]
    assert f"<{UI}/runs/{retrain.run_id}|Open>" in launched["blocks"][1]["text"]["text"]
    online_post = posts["churn: drift detected (online_drift)"]
    assert (
        f"{UI}/assets/monitoring/churn/online_drift|Open>"
        in online_post["blocks"][1]["text"]["text"]
    )
    assert "psi: 0.41" in online_post["blocks"][1]["text"]["text"]

    # Repeated ticks, and the same checks failing again: the same incidents, nothing new.
    dg.materialize([drift], instance=instance)
    for _ in range(3):
        assert "0 new alert(s)" in ticks.tick()
    assert len(hook.posts) == 4


def test_promotions_and_rollbacks_are_announced_once_whoever_made_them(world):
    from mlops_assets.training.decisions import record

    hook, _, ticks = world
    ticks.tick()
    registry = ticks.registry.registry()
    name = CHURN.registered_model
    # What rollout.promote and rollout.rollback record, from the control API (its principal),
    # the CLI and a Dagster run; other decisions are no alert.
    record(registry, name, "4", "rollout", "promoted", "alice", "canary looks good", {})
    record(registry, name, "4", "alias", "champion", "alice", "canary looks good", {})
    ticks.tick()
    record(registry, name, "4", "rollout", "rolled_back", "cli", "manual rollback", {})
    record(registry, name, "5", "rollout", "rolled_back", "dagster:run-canary-1", "AUC fell", {})
    for _ in range(3):
        ticks.tick()
    titles = [p["blocks"][0]["text"]["text"] for p in hook.posts]
    assert titles == ["churn: canary promoted", *["churn: canary rolled back"] * 2], titles
    promoted, by_cli, by_run = (p["blocks"][1]["text"]["text"] for p in hook.posts)
    assert (
        "by alice" in promoted
        and f"<{UI}/assets/{'/'.join(deployment_key(CHURN).path)}|Open>" in promoted
    )
    assert "by cli" in by_cli and "manual rollback" in by_cli
    assert f"<{UI}/runs/run-canary-1|Open>" in by_run


def test_a_dead_webhook_neither_fails_nor_stalls_the_tick_and_alerts_wait(tmp_path):
    dead = refused_url()
    variables = {"MLOPS_ALERTS_WEBHOOK_URL": dead, "MLOPS_ALERTS_TIMEOUT_SECONDS": "0.5"}
    with (
        environment(variables),
        scratch_settings(tmp_path / "data", small_world(200)),
        dg.instance_for_test() as instance,
    ):
        ticks = Ticks(instance, tmp_path / "data")
        ticks.tick()
        monitors = ("prediction_drift", "feature_drift", "data_quality")
        assets = [
            _failing_check_asset(monitor_key(CHURN, m), f"{m}_within_thresholds") for m in monitors
        ]
        dg.materialize(assets, instance=instance)
        started = time.monotonic()
        message = ticks.tick()
        # One alert's attempts (3 x 0.5 s + 0.75 s of backoff), then the tick gives up on the
        # webhook: trying all three would take over 6.7 s.
        assert time.monotonic() - started < 6, message
        assert "3 new alert(s)" in message and "queued 3" in message and "Error" in message
        queued = json.loads(ticks.cursor)["outbox"]["pending"]
        assert sorted(a["kind"] for a in queued) == [
            "drift_detected",
            "drift_detected",
            "monitor_breached",
        ]
        # The webhook comes back on the same address: the queued alert goes out, once.
        port = int(dead.rsplit(":", 1)[1].split("/")[0])
        with webhook_receiver(port=port) as hook:
            assert "sent 3" in ticks.tick()
            ticks.tick()
        assert sorted(hook.titles()) == [
            "churn: drift detected (feature_drift)",
            "churn: drift detected (prediction_drift)",
            "churn: monitor breached (data_quality)",
        ]


@pytest.mark.parametrize("unset", [None, ""])
def test_without_a_webhook_the_sensor_logs_and_says_so(tmp_path, unset):
    with (
        environment({"MLOPS_ALERTS_WEBHOOK_URL": unset}),
        scratch_settings(tmp_path / "data", small_world(200)),
        dg.instance_for_test() as instance,
    ):
        ticks = Ticks(instance, tmp_path / "data")
        ticks.tick()
        dg.materialize([_failing_check_asset(promotion_key(CHURN), GATE_CHECK)], instance=instance)
        message = ticks.tick()
        assert "1 new alert(s)" in message and "MLOPS_ALERTS_WEBHOOK_URL" in message
        assert json.loads(ticks.cursor)["outbox"]["pending"] == []


def _predict(endpoint: str, n: int) -> None:
    body = json.dumps({"instances": [{"customer_id": 1}]}).encode()
    for _ in range(n):
        request = urllib.request.Request(
            f"{endpoint}/v1/models/{CHURN.name}:predict",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 404  # no model loaded: counted as model_not_loaded


def test_the_serving_error_rate_of_the_real_model_server(world, tmp_path):
    """The local model server in standby (no model loaded: every predict is a 404 it counts in
    mlops_prediction_errors_total): over the limit once enough requests failed, one alert."""
    from mlops_assets.serving.local_server import server_state, start_standby, stop_server

    hook, _, ticks = world
    data = tmp_path / "data"
    state = start_standby(data, free_port())
    try:
        deadline = time.monotonic() + 120
        while server_state(data) is None:
            assert time.monotonic() < deadline, "model server did not start"
            time.sleep(0.3)
        ticks.tick()  # the server is seen: its interval starts
        _predict(state["endpoint"], 10)
        assert "0 new alert(s)" in ticks.tick()  # 10 requests: fewer than the minimum (20)
        _predict(state["endpoint"], 15)
        message = ticks.tick()
        assert "1 new alert(s)" in message, message
        _predict(state["endpoint"], 25)
        ticks.tick()
        assert hook.titles() == ["churn: serving error rate 100.0% over the 5% limit"]
        assert "25 of 25 requests" in hook.posts[0]["blocks"][1]["text"]["text"]
        assert f"{UI}/assets/deployments/churn/endpoint" in hook.posts[0]["text"]
        _assert_rules_use_exported_metrics(state["endpoint"])
    finally:
        stop_server(data)


def _assert_rules_use_exported_metrics(endpoint: str) -> None:
    """Every mlops_* metric the Prometheus rules use is on this real server's /metrics."""
    from tests.monitoring.test_alert_rules import metric_names_in_rules

    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            name = name.removesuffix("_total")  # counters: the family is named without it
            exported |= {name + s for s in suffixes.get(kind, ("",))}
    used = metric_names_in_rules()
    assert used and used <= exported, used - exported
