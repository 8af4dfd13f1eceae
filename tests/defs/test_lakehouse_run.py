"""The landing -> bronze -> silver -> gold chain on real DuckDB through Dagster, and what a bad
delivery does to it."""

import datetime as dt
import hashlib
import subprocess

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_assets.datagen.landing import partition_files, write_partition
from mlops_assets.defs.dbt.assets import lakehouse_dbt_assets
from mlops_assets.defs.dbt.project import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_resource
from mlops_assets.defs.landing.assets import landing_tables
from mlops_assets.defs.landing.checks import KEYS_UNIQUE_CHECK, SCHEMA_CHECK, landing_quality_checks
from mlops_assets.defs.landing.resources import LandingZoneResource
from mlops_assets.model_config import dbt_vars

pytestmark = pytest.mark.slow
DAYS = 75
START = dt.date(2025, 1, 1)
LAST = START + dt.timedelta(days=DAYS - 1)
RANGE_TAGS = {
    "dagster/asset_partition_range_start": START.isoformat(),
    "dagster/asset_partition_range_end": LAST.isoformat(),
}
ALL = [landing_tables, landing_quality_checks, lakehouse_dbt_assets]


def _resources(settings):
    return {
        "landing_zone": LandingZoneResource(root=settings.landing, data_dir=str(settings.data_dir)),
        "dbt": dbt_resource(),
    }


def _run(settings, instance, selection=None):
    return dg.materialize(
        ALL,
        selection=selection,
        resources=_resources(settings),
        instance=instance,
        tags=RANGE_TAGS,
        raise_on_error=False,
    )


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def built(settings):
    """A clean history built once through Dagster (landing, checks, dbt build)."""
    instance = dg.DagsterInstance.ephemeral()
    result = _run(settings, instance)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return settings, instance, result


def test_clean_history_reaches_gold(built):
    settings, _, result = built
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "warehouse/gold/customer_features" in materialized
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    orders = con.sql("select count(*) from silver.fct_orders").fetchone()[0]
    feats = con.sql(
        "select count(*), min(event_timestamp), max(event_timestamp) from gold.customer_features"
    ).fetchone()
    # Point-in-time: no snapshot uses an order at or after its own timestamp.
    leaks = con.sql(
        """
        select count(*) from gold.customer_features f
        where f.last_order_at >= f.event_timestamp
        """
    ).fetchone()[0]
    labels = con.sql("select count(*), max(label_available_at) from gold.churn_labels").fetchone()
    con.close()
    assert orders > 1000 and feats[0] > 1000
    assert leaks == 0
    # Labels only for snapshots whose 30-day window ended inside the landed data.
    assert labels[0] > 0
    assert labels[1] <= dt.datetime.combine(LAST + dt.timedelta(days=1), dt.time())
    assert (settings.gold_dir / "customer_features.parquet").exists()


def test_order_features_see_only_the_past_and_fraud_labels_wait_for_their_window(built):
    settings, _, _ = built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    orders = con.sql("select count(*) from silver.fct_orders").fetchone()[0]
    features = con.sql("select count(*) from gold.order_features").fetchone()[0]
    # Point-in-time: recount each order's earlier orders from silver; none is at or after it.
    wrong = con.sql(
        """
        select count(*) from gold.order_features f
        where f.customer_orders_prev_24h != (
            select count(*) from silver.fct_orders o
            where o.customer_id = f.customer_id
              and o.ordered_at < f.event_timestamp
              and o.ordered_at >= f.event_timestamp - interval 24 hour
        )
        """
    ).fetchone()[0]
    labels = con.sql(
        "select count(*), sum(is_fraud), max(label_available_at) from gold.fraud_labels"
    ).fetchone()
    con.close()
    assert features == orders and wrong == 0
    # 75 days and a 60-day window: only the first ~2 weeks of orders have labels yet.
    assert 0 < labels[0] < orders / 3 and labels[1] > 0
    assert labels[2] <= dt.datetime.combine(LAST + dt.timedelta(days=1), dt.time())
    assert (settings.gold_dir / "order_features.parquet").exists()


def test_duplicate_orders_fail_the_named_check_and_do_not_reach_gold(built):
    settings, instance, _ = built
    gold = settings.gold_dir / "customer_features.parquet"
    before = _digest(gold)
    day = LAST - dt.timedelta(days=3)
    orders = pq.read_table(partition_files(settings.landing, "orders", day)[0])
    write_partition(settings.landing, "orders", day, pa.concat_tables([orders, orders.slice(0, 4)]))

    # Re-check the delivered files and rebuild the warehouse, without re-landing (which would
    # overwrite the bad file).
    selection = dg.AssetSelection.checks_for_assets(landing_tables) | dg.AssetSelection.assets(
        lakehouse_dbt_assets
    )
    result = _run(settings, instance, selection=selection)
    assert not result.success
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }
    failed = evaluations[("landing/orders", KEYS_UNIQUE_CHECK)]
    assert not failed.passed
    assert failed.metadata["duplicate_key_rows"].value == 4
    assert failed.metadata["rows"].value > 4
    assert evaluations[("landing/orders", SCHEMA_CHECK)].passed
    assert evaluations[("landing/customers", KEYS_UNIQUE_CHECK)].passed
    # The blocking check stopped the run before dbt: nothing downstream materialized.
    assert not result.get_asset_materialization_events()
    assert _digest(gold) == before


def test_dbt_alone_stops_bad_data_at_bronze(built):
    """Without Dagster's gate, dbt's own tests keep a cross-day duplicate out of silver and gold."""
    settings, _, _ = built
    gold = settings.gold_dir / "customer_features.parquet"
    before = _digest(gold)
    # The same order delivered again on a later day: each file is clean on its own.
    first = pq.read_table(
        partition_files(settings.landing, "orders", LAST - dt.timedelta(days=5))[0]
    )
    last = pq.read_table(partition_files(settings.landing, "orders", LAST)[0])
    write_partition(settings.landing, "orders", LAST, pa.concat_tables([last, first.slice(0, 2)]))
    settings.export_dbt_env()
    proc = subprocess.run(
        [DBT_EXECUTABLE, "build", "--target", settings.dbt_target, "--vars", dbt_vars()],
        cwd=DBT_PROJECT_DIR,
        env={**__import__("os").environ, "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "FAIL 2 unique_stg_orders_order_id" in proc.stdout
    assert "SKIP relation gold.customer_features" in proc.stdout or "SKIP" in proc.stdout
    assert _digest(gold) == before
