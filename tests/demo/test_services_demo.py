"""`mlops demo` on the services profile (`MLOPS_ENV=services`), as a user runs it: the whole loop
on SeaweedFS (S3 + Iceberg REST), PostgreSQL and Redis, and each part really lives there."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.settings import PROJECT_ROOT, SERVICES_DATABASES, Environment, Settings
from mlops_assets.testing import free_port, free_port_offset
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT, REDIS_HOST, REDIS_PORT, require_service

pytestmark = pytest.mark.slow
MLOPS = str(Path(sys.executable).parent / "mlops")
# The timeline of the default world's demo, (model, event): churn's world drifts (retraining, a
# canary that wins), fraud's does not (its sensor stays quiet).
STORY = [
    ("", "drift_switched_on"),
    ("", "lakehouse_built"),
    ("churn", "trained_and_deployed"),
    ("fraud", "trained_and_deployed"),
    ("churn", "scored"),
    ("fraud", "scored"),
    ("churn", "monitored"),
    ("fraud", "monitored"),
    ("fraud", "no_degradation"),
    ("churn", "retraining_launched"),
    ("churn", "canary_started"),
    ("churn", "canary_traffic"),
    ("churn", "canary_promote"),
    ("churn", "serving"),
]


@pytest.fixture
def services_env(tmp_path):
    """A services profile of its own: data folder, SeaweedFS ports, databases and Redis db."""
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    env = {
        **os.environ,
        "MLOPS_ENV": "services",
        "MLOPS_DATA_DIR": str(tmp_path / "data"),
        "MLOPS_SERVING_PORT": str(free_port()),
        "MLOPS_SERVICES_PORT_OFFSET": str(free_port_offset()),
        "MLOPS_SERVICES_DB_PREFIX": f"mlops_t{uuid.uuid4().hex[:8]}",
        "MLOPS_SERVICES_REDIS_DB": "9",
        "MLOPS_POSTGRES_URL": f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres",
        "MLOPS_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
    }
    env.pop("DAGSTER_HOME", None)
    settings = Settings(
        env=Environment.SERVICES,
        data_dir=tmp_path / "data",
        services_port_offset=int(env["MLOPS_SERVICES_PORT_OFFSET"]),
        services_db_prefix=env["MLOPS_SERVICES_DB_PREFIX"],
        services_redis_db=9,
    )
    yield env, settings
    subprocess.run([MLOPS, "services", "down"], env=env, cwd=PROJECT_ROOT, check=False)
    from mlops_assets.service_stores import reset_redis

    reset_redis(settings)
    admin = psycopg2.connect(settings.postgres_url)
    admin.autocommit = True
    with contextlib.closing(admin), admin.cursor() as cur:
        for name in SERVICES_DATABASES:
            cur.execute(
                f'DROP DATABASE IF EXISTS "{settings.services_db_prefix}_{name}" WITH (FORCE)'
            )


def _count(settings: Settings, database: str, sql: str) -> int:
    connection = psycopg2.connect(settings.services_database(database))
    with contextlib.closing(connection) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def test_the_whole_loop_runs_on_s3_the_rest_catalog_postgresql_and_redis(services_env):
    env, settings = services_env
    proc = subprocess.run(
        [MLOPS, "demo"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "profile services" in proc.stdout
    for event in ("lakehouse_built", "retraining_launched", "canary_started", "canary_promote"):
        assert event in proc.stdout, proc.stdout

    _each_part_lives_on_its_service(settings)
    _the_feast_cli_materializes_from_s3_into_redis(env, settings)


def _each_part_lives_on_its_service(settings: Settings) -> None:
    # The Iceberg tables are the REST catalog's, their files on S3.
    from mlops_assets.resources import open_resources

    settings.export_services_env()
    with open_resources(settings) as res:
        catalog = res.lakehouse.catalog()
        assert catalog.properties["type"] == "rest"
        for name in ("predictions.churn_daily", "monitoring.timeline"):
            table = catalog.load_table(name)
            assert table.metadata_location.startswith("s3://mlops-lake/"), name
            assert table.scan().to_arrow().num_rows > 0, name
        # The same story as the embedded profile's demo, in the same order.
        timeline = catalog.load_table("monitoring.timeline").scan().to_pandas()
        ordered = timeline.sort_values("occurred_at", kind="stable")
        assert list(zip(ordered["model"], ordered["event"], strict=True)) == STORY
        # Analysts' SQL: DuckDB over the REST catalog's tables, in Trino's dialect.
        events = res.warehouse.analyst_sql(
            "select count(*) as n from iceberg.monitoring.timeline where event like 'canary%'"
        )
        assert int(events["n"].iloc[0]) >= 2
        # Landing and gold files on S3 (dbt read and wrote them there).
        import pyarrow.fs as pafs

        s3, _ = pafs.FileSystem.from_uri("s3://mlops-files/")
        gold = s3.get_file_info("mlops-files/gold/customer_features.parquet")
        assert gold.type == pafs.FileType.File and gold.size > 0
        landed = s3.get_file_info(pafs.FileSelector("mlops-files/landing", recursive=True))
        tables = len(LANDING_TABLES)
        assert sum(f.path.endswith(".parquet") for f in landed) == tables * settings.world().days
        # DVC pushed the training sets to the S3 remote.
        pushed = s3.get_file_info(pafs.FileSelector("mlops-files/dvc", recursive=True))
        assert any(f.type == pafs.FileType.File for f in pushed)
        # MLflow: registry on PostgreSQL, artifacts on S3.
        from mlops_assets.training.registry import client

        mlflow = client(res.model_registry.registry())
        versions = mlflow.search_model_versions("name='churn'")
        assert len(versions) >= 2
        assert all(v.source.startswith(("s3://mlops-files/mlflow", "models:/")) for v in versions)
    assert _count(settings, "mlflow", "select count(*) from model_versions") >= 2
    # Dagster's runs and Feast's registry are in PostgreSQL, the online features in Redis.
    assert _count(settings, "dagster", "select count(*) from runs") >= 4
    assert _count(settings, "feast", "select count(*) from feature_views") >= 1
    import redis

    online = redis.Redis.from_url(settings.services_redis_url)
    assert online.dbsize() >= 1000
    online.close()
    state = json.loads(settings.seaweed().state_path.read_text())
    assert state["s3_endpoint"].endswith(str(8333 + settings.services_port_offset))


def _the_feast_cli_materializes_from_s3_into_redis(env: dict, settings: Settings) -> None:
    """The Feast CLI on the profile's generated config, as a Feast user runs it in feature_repo/:
    gold read from S3 by the offline store, rows written to the profile's Redis database."""
    import redis

    online = redis.Redis.from_url(settings.services_redis_url)
    online.flushdb()
    config = settings.data_dir / "feast" / "feature_store.yaml"
    last = settings.world().last_day
    week = [last - dt.timedelta(days=7), last + dt.timedelta(days=1)]
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "feast"),
            "-f",
            str(config),
            "materialize",
            *(f"{day.isoformat()}T00:00:00" for day in week),
        ],
        cwd=PROJECT_ROOT / "feature_repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert online.dbsize() > 0
    online.close()
