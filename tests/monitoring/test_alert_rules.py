"""The Prometheus alert rules beside the Grafana dashboard (deploy/monitoring/alert_rules.yml):
loaded by prometheus.yml, in the rule-file shape, every expression valid PromQL and every rule
exercised by promtool's unit tests (alert_rules.test.yml), on metric names the model server
exports. promtool comes from Debian's `prometheus` package (`apt-get install -y
--no-install-recommends prometheus`); without it those tests skip (fail when CI=true)."""

import re
import shutil
import subprocess

import pytest
import yaml

from mlops_assets.settings import PROJECT_ROOT
from tests.conftest import IN_CI

MONITORING = PROJECT_ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alert_rules.yml"
RULE_KEYS = {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
EXPECTED = {
    "MlopsPredictionErrorRateHigh",
    "MlopsPredictionServerErrors",
    "MlopsPredictLatencyP99High",
    "MlopsNoPredictionTraffic",
    "MlopsModelServerDown",
    "MlopsNoModelServer",
}


def _rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def metric_names_in_rules() -> set[str]:
    """The model server's metrics (mlops_*) the rules' expressions use."""
    return {name for rule in _rules() for name in re.findall(r"\b(mlops_[a-z_]+)", rule["expr"])}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = (
            "promtool is not installed (apt-get install -y --no-install-recommends prometheus)"
        )
        if IN_CI:
            pytest.fail(f"{message}, and CI=true makes the alert rule tests mandatory")
        pytest.skip(message)
    return path


def test_prometheus_loads_the_rules_beside_the_dashboard():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alert_rules.yml"]
    assert (MONITORING / config["rule_files"][0]).is_file()
    # The local server hosts every model: no target label may hide the series' own `model`.
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            assert "model" not in static.get("labels", {}), job["job_name"]


def test_the_rule_file_has_prometheus_shape():
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    names = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS and {"alert", "expr", "labels", "annotations"} <= set(
                rule
            )
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert {"summary", "description"} <= set(rule["annotations"])
            names.add(rule["alert"])
    assert names == EXPECTED


def test_the_rules_use_metrics_the_model_server_registers():
    from prometheus_client import REGISTRY

    import mlops_assets.serving.predictor  # noqa: F401 - registers the metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = set()
    for family in REGISTRY.collect():
        exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    used = metric_names_in_rules()
    assert {
        "mlops_prediction_errors_total",
        "mlops_predict_latency_seconds_count",
        "mlops_predict_latency_seconds_bucket",
    } <= used
    assert used <= exported, used - exported


def test_promtool_checks_every_expression():
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_promtool_unit_tests_fire_every_alert():
    tests = MONITORING / "alert_rules.test.yml"
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- ", tests.read_text()))
    assert fired == EXPECTED  # each rule has a case where it fires
    result = subprocess.run(
        [_promtool(), "test", "rules", tests.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_rule_is_caught(tmp_path):
    """The check is real: promtool refuses an expression that is not PromQL."""
    broken = tmp_path / "broken.yml"
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"][0]["rules"][0]["expr"] = (
        "sum by (model) (rate(mlops_prediction_errors_total[5m])"
    )
    broken.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [_promtool(), "check", "rules", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "parse error" in (result.stdout + result.stderr)
