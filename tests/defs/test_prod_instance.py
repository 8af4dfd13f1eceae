"""The production Dagster instance config (deploy/dagster/prod/dagster.yaml) on the real
PostgreSQL of this machine, and its Kubernetes run launcher built from the same file."""

import shutil
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import psycopg2
import pytest
import yaml

from mlops_assets.settings import PROJECT_ROOT

pytestmark = pytest.mark.postgres
PROD_CONFIG = PROJECT_ROOT / "deploy" / "dagster" / "prod" / "dagster.yaml"


@pytest.fixture
def prod_home(tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = urlparse(postgres_dsn)
    for name, value in {
        "DAGSTER_PG_HOST": url.hostname,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": url.path.lstrip("/"),
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
        "DAGSTER_K8S_NAMESPACE": "mlops",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster-run",
    }.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROD_CONFIG, home / "dagster.yaml")
    return home


@dg.asset
def tiny_numbers() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dagster/row_count": 3})


def test_prod_instance_runs_a_materialization_on_postgres(prod_home: Path, postgres_dsn: str):
    instance = dg.DagsterInstance.from_config(str(prod_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = dg.materialize([tiny_numbers], instance=instance)
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey("tiny_numbers"))
        assert event.asset_materialization.metadata["dagster/row_count"].value == 3
    finally:
        instance.dispose()
    # The run really sits in PostgreSQL, not in a local file.
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (result.run_id,))
        assert cur.fetchone() == ("SUCCESS",)


def test_prod_run_launcher_is_a_valid_k8s_launcher(prod_home: Path, tmp_path: Path):
    """No cluster here: swap in-cluster auth for a kubeconfig file (never contacted) and let
    Dagster build the launcher from the rest of the production config."""
    config = yaml.safe_load((prod_home / "dagster.yaml").read_text())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    launcher_config = config["run_launcher"]["config"]
    launcher_config["load_incluster_config"] = False
    launcher_config["kubeconfig_file"] = str(kubeconfig)
    (prod_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = dg.DagsterInstance.from_config(str(prod_home))
    try:
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "K8sRunLauncher"
        assert launcher.job_namespace == "mlops"
        assert launcher.instance_config_map == "dagster-instance"
        assert "mlops-secrets" in launcher.env_secrets
    finally:
        instance.dispose()
