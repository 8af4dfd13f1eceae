"""The Grafana dashboard and Prometheus config under deploy/monitoring refer to metrics the
predictor exports and to tables and columns the monitoring and prediction tables have."""

import json
import re

import sqlglot
import yaml
from sqlglot import exp

from mlops_assets.lakehouse.tables import MONITORING as MONITORING_TABLE
from mlops_assets.lakehouse.tables import PREDICTIONS
from mlops_assets.settings import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "deploy" / "monitoring"
TABLES = {
    f"iceberg.{MONITORING_TABLE.name('churn')}": set(MONITORING_TABLE.schema.names),
    f"iceberg.{PREDICTIONS.name('churn')}": set(PREDICTIONS.schema.names),
}


def _dashboard() -> dict:
    return json.loads((MONITORING / "grafana" / "dashboards" / "mlops-churn.json").read_text())


def _exported_metrics() -> set[str]:
    from prometheus_client import REGISTRY

    import mlops_assets.serving.predictor  # noqa: F401 - registers the metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for family in REGISTRY.collect():  # labelled metrics have no samples until first use
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def test_promql_panels_use_metrics_the_predictor_exports():
    exported = _exported_metrics()
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p["targets"] if "expr" in t]
    assert exprs
    for expr in exprs:
        used = set(re.findall(r"\b(mlops_[a-z_]+)", expr))
        assert used and used <= exported, (expr, used - exported)


def test_sql_panels_parse_as_trino_and_use_existing_columns():
    queries = [t["rawSQL"] for p in _dashboard()["panels"] for t in p["targets"] if "rawSQL" in t]
    assert len(queries) >= 4
    for query in queries:
        tree = sqlglot.parse_one(query, read="trino")
        [table] = list(tree.find_all(exp.Table))
        name = ".".join(part.name for part in table.parts)
        assert name in TABLES, name
        columns = {c.name for c in tree.find_all(exp.Column)}
        aliases = {a.alias for a in tree.find_all(exp.Alias)}
        assert columns - aliases <= TABLES[name] | {"time"}, (query, columns - TABLES[name])


def test_dashboard_and_provisioning_are_consistent():
    dashboard = _dashboard()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    sources = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources.yaml").read_text()
    )
    uids = {d["uid"] for d in sources["datasources"]}
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert used <= uids


def test_prometheus_scrapes_the_local_server_and_kserve_pods():
    from mlops_assets.model_config import model_configs

    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    port = model_configs()["churn"].serving.port
    assert jobs["mlops-local-predictor"]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
    assert jobs["kserve-inferenceservices"]["kubernetes_sd_configs"][0]["role"] == "pod"
