"""Batch predictions into Iceberg (real pyiceberg SQL catalog) and analyst SQL in Trino's dialect
on DuckDB's Iceberg extension, over a small generated shop with a real MLflow champion."""

import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_assets.datasets.training_set import (
    Labels,
    build_training_set,
    historical_features,
    load_labels,
)
from mlops_assets.features.offline import offline_features
from mlops_assets.lakehouse.sql import QueryError
from mlops_assets.lakehouse.tables import PREDICTIONS
from mlops_assets.model_config import model_configs
from mlops_assets.serving.batch import fill_actuals, score_days
from mlops_assets.serving.label_engine import apply_rules
from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.testing import (
    build_shop,
    register_quick_model,
    scratch_world,
)
from mlops_assets.training.decisions import set_alias
from mlops_assets.training.registry import CHAMPION

pytestmark = pytest.mark.slow
CONFIG = model_configs()["churn"]
LABELS = Labels.of(CONFIG)
DAY = dt.date(2025, 5, 20)
QUERIES = PROJECT_ROOT / "analytics"


@dataclass
class Served:
    """A scored shop: its settings, initialized resources, feature store and champion."""

    settings: Any
    resources: Any
    store: Any
    version: str

    @property
    def registry(self):
        return self.resources.model_registry.registry()

    @property
    def catalog(self):
        return self.resources.lakehouse.catalog()

    def score(self, day: dt.date) -> dict:
        """Score one day, as a daily run does."""
        return score_days(self.catalog, self.store, self.registry, CONFIG, [day])

    def sql(self, query: str) -> pd.DataFrame:
        return self.resources.warehouse.analyst_sql(query)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    with scratch_world(root, 3000) as (settings, res):
        store = build_shop(settings, days=150)
        folder = root / "dataset"
        build_training_set(store, LABELS, load_labels(res.warehouse, LABELS), folder)
        registry = res.model_registry.registry()
        version = register_quick_model(registry, CONFIG, folder)
        set_alias(
            registry, CONFIG.registered_model, CHAMPION, version, actor="test", reason="fixture"
        )
        yield Served(settings, res, store, version)


def _table(served: Served) -> pd.DataFrame:
    return served.catalog.load_table(PREDICTIONS.name(CONFIG.name)).scan().to_pandas()


def test_offline_features_equal_feasts_point_in_time_join(served):
    store = served.store
    as_of = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    fast = offline_features(store, "churn_v1", as_of).set_index("customer_id")
    assert len(fast) > 500
    sample = fast.sample(200, random_state=0).index
    labels = pd.DataFrame({"customer_id": sample, "event_timestamp": as_of, "churned": 0})
    feast = historical_features(store, LABELS, labels).set_index("customer_id")
    for column in (
        "lifetime_value_usd",
        "order_count_30d",
        "plan",
        "open_ticket_count",
        "days_since_last_order_now",
    ):
        left, right = fast.loc[sample, column], feast.loc[sample, column]
        if left.dtype.kind == "f":
            np.testing.assert_allclose(left.to_numpy(float), right.to_numpy(float), rtol=1e-9)
        else:
            assert (left.to_numpy() == right.to_numpy()).all(), column


def test_order_features_with_customer_views_equal_feasts_point_in_time_join(served):
    """An order model's population (the day's orders) with the customer views joined as of each
    order: every feature equals Feast's historical retrieval for the same (order, customer, time)."""
    fraud = model_configs()["fraud"]
    store = served.store
    as_of = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    fast = offline_features(store, fraud.feature_service, as_of, fraud.entity)
    assert len(fast) > 30 and fast["order_id"].is_unique
    orders = served.resources.warehouse.query(
        "select order_id, customer_id, event_timestamp from gold.order_features "
        f"where event_timestamp > timestamp '{DAY}' and event_timestamp <= timestamp '{as_of:%F}'"
    )
    assert sorted(fast["order_id"]) == sorted(orders["order_id"])  # the day's orders, all
    labels = orders.assign(is_fraud=0)
    feast = historical_features(store, Labels.of(fraud), labels).set_index("order_id")
    fast = fast.set_index("order_id").loc[feast.index]
    missing_customer = fast["plan"].isna()
    assert 0 < missing_customer.sum() < len(fast)  # new accounts have no snapshot yet
    for column in [c for c in fast.columns if c != "customer_id"]:
        left, right = fast[column], feast[column]
        assert (left.isna() == right.isna()).all(), column
        known = left.notna()
        if left.dtype.kind == "f" or right.dtype.kind == "f":
            np.testing.assert_allclose(
                left[known].to_numpy(float), right[known].to_numpy(float), rtol=1e-9
            )
        else:
            assert (left[known].to_numpy() == right[known].to_numpy()).all(), column


def test_a_day_is_scored_once_and_a_rerun_replaces_it(served):
    version = served.version
    first = served.score(DAY)
    served.score(DAY + dt.timedelta(days=1))
    again = served.score(DAY)
    table = _table(served)
    day = table[table["prediction_date"] == DAY]
    assert len(day) == first["rows"] == again["rows"]
    assert day["prediction_id"].is_unique and table["prediction_id"].is_unique
    assert set(day["model_version"]) == {version}
    assert day["actual"].isna().all()
    assert ((day["confidence"] >= 0.5) & (day["confidence"] <= 1)).all()
    assert set(day["risk_band"]) <= {"low", "medium", "high", "critical"}
    # The partition spec is the day: analysts prune by prediction_date.
    spec = served.catalog.load_table(PREDICTIONS.name(CONFIG.name)).spec()
    assert [f.name for f in spec.fields] == ["prediction_date"]


@pytest.mark.parametrize("chunk_rows", [500_000, 1_000])
def test_a_range_run_scores_exactly_what_day_by_day_runs_score(served, monkeypatch, chunk_rows):
    """A range is predicted in calls over many days (the trees run in parallel over every row),
    in chunks of about `CHUNK_ROWS` (small here: a chunk ends inside the range); each day's rows
    equal that day scored alone."""
    from mlops_assets.serving import batch

    monkeypatch.setattr(batch, "CHUNK_ROWS", chunk_rows)
    days = [DAY + dt.timedelta(days=offset) for offset in range(3)]
    for day in days:
        served.score(day)
    alone = _table(served)
    together = score_days(served.catalog, served.store, served.registry, CONFIG, days)
    assert together["rows"] == len(alone[alone["prediction_date"].isin(days)])
    ranged = _table(served)
    columns = ["prediction_id", "score", "prediction", "risk_band", "rule", "model_version"]
    for frame in (alone, ranged):
        frame.sort_values("prediction_id", inplace=True, ignore_index=True)
    pd.testing.assert_frame_equal(
        alone[alone["prediction_date"].isin(days)][columns].reset_index(drop=True),
        ranged[ranged["prediction_date"].isin(days)][columns].reset_index(drop=True),
    )


def test_feature_snapshots_are_reread_when_the_gold_file_changes(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_assets.features import offline
    from mlops_assets.features.offline import snapshots as _snapshots

    path = tmp_path / "customer_features.parquet"
    pq.write_table(pa.table({"customer_id": [1, 2]}), path)
    with _snapshots(str(path)) as (con, relation):
        assert con.execute(f"select count(*) from {relation}").fetchone()[0] == 2
    pq.write_table(pa.table({"customer_id": [1, 2, 3]}), path)  # dbt rebuilt gold
    with _snapshots(str(path)) as (con, relation):
        assert con.execute(f"select count(*) from {relation}").fetchone()[0] == 3
    monkeypatch.setattr(offline, "SNAPSHOT_CACHE_BYTES", 0)  # a large file is read in place
    pq.write_table(pa.table({"customer_id": [1, 2, 3, 4]}), path)
    with _snapshots(str(path)) as (con, relation):
        assert relation.startswith("read_parquet(")
        assert con.execute(f"select count(*) from {relation}").fetchone()[0] == 4


def test_analyst_queries_match_pandas(served):
    for offset in range(3):
        served.score(DAY + dt.timedelta(days=offset))
    data = _table(served)

    volume = served.sql((QUERIES / "daily_volume.sql").read_text())
    expected = data.groupby("prediction_date").agg(
        predictions=("score", "size"), mean_score=("score", "mean")
    )
    assert volume["predictions"].tolist() == expected["predictions"].tolist()
    np.testing.assert_allclose(volume["mean_score"], expected["mean_score"].round(6), atol=1e-6)

    deciles = served.sql((QUERIES / "score_distribution.sql").read_text())
    expected = (
        data.assign(d=np.floor(data["score"] * 10).astype(int))
        .groupby(["model_version", "d"])
        .size()
    )
    assert deciles["predictions"].tolist() == expected.tolist()

    bands = served.sql((QUERIES / "risk_bands.sql").read_text())
    expected = data.groupby(["prediction_date", "risk_band"]).agg(
        customers=("score", "size"), raised=("rule", lambda r: int((r != "score").sum()))
    )
    assert bands["customers"].tolist() == expected["customers"].tolist()
    assert bands["raised_by_override"].astype(int).tolist() == expected["raised"].tolist()


def test_actuals_arrive_once_the_churn_window_has_passed(served):
    settings = served.settings
    early = dt.date(2025, 4, 10)  # window ends 2025-05-11, inside the 150 landed days
    served.score(early)
    served.score(DAY)  # window ends after the landed data
    result = fill_actuals(served.catalog, served.resources.warehouse, CONFIG)
    assert str(early) in result["filled_days"] and str(DAY) not in result["filled_days"]
    table = _table(served)
    filled = table[table["prediction_date"] == early]
    assert filled["actual"].notna().all()
    assert table[table["prediction_date"] == DAY]["actual"].isna().all()
    # Independently: churned = no order in the 30 days after the as-of time.
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        buyers = set(
            con.execute(
                "select distinct customer_id from silver.fct_orders "
                "where ordered_at >= ? and ordered_at < ?",
                [dt.datetime(2025, 4, 11), dt.datetime(2025, 5, 11)],
            ).df()["customer_id"]
        )
    expected = (~filled["customer_id"].isin(buyers)).astype(int)
    assert (filled["actual"].astype(int).to_numpy() == expected.to_numpy()).all()
    assert 0.05 < filled["actual"].mean() < 0.95
    # A second sweep changes nothing; the accuracy query sees the labelled day only.
    before = _table(served).sort_values("prediction_id").reset_index(drop=True)
    fill_actuals(served.catalog, served.resources.warehouse, CONFIG)
    after = _table(served).sort_values("prediction_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    accuracy = served.sql((QUERIES / "accuracy.sql").read_text())
    assert accuracy["prediction_date"].astype(str).tolist() == [str(early)]
    expected_accuracy = (filled["prediction"] == filled["actual"]).mean()
    assert accuracy["accuracy"].iloc[0] == pytest.approx(expected_accuracy, abs=1e-6)


def test_bad_sql_is_a_clear_error(served):
    with pytest.raises(QueryError, match="query failed"):
        served.sql("SELECT no_such_column FROM iceberg.predictions.churn_daily")
    with pytest.raises(QueryError, match="expected one statement"):
        served.sql("SELECT 1; SELECT 2")


def test_label_engine_bands_and_overrides():
    rules = CONFIG.label_engine
    features = pd.DataFrame(
        {
            "plan": ["free", "premium", "premium", "basic", "free"],
            "open_ticket_count": [0, 2, 0, 0, 0],
            "segment": ["loyal", "loyal", "loyal", "new", "loyal"],
        }
    )
    scores = np.array([0.1, 0.1, 0.1, 0.1, 0.9])
    out = apply_rules(scores, features, rules, threshold=0.5)
    assert out["risk_band"].tolist() == ["low", "high", "low", "medium", "critical"]
    assert out["rule"].tolist() == [
        "score",
        "override:premium_with_open_tickets",
        "score",
        "override:new_customer_watch",
        "score",
    ]
    assert out["prediction"].tolist() == [0, 0, 0, 0, 1]


def test_mlops_sql_cli_runs_a_file(served):
    settings = served.settings
    proc = subprocess.run(
        [
            str(Path(os.sys.executable).parent / "mlops"),
            "sql",
            "--file",
            str(QUERIES / "daily_volume.sql"),
        ],
        env={**os.environ, "MLOPS_DATA_DIR": str(settings.data_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "prediction_date" in proc.stdout and str(DAY) in proc.stdout
    bad = subprocess.run(
        [str(Path(os.sys.executable).parent / "mlops"), "sql", "SELEC nonsense"],
        env={**os.environ, "MLOPS_DATA_DIR": str(settings.data_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "error:" in bad.stderr and "Traceback" not in bad.stderr


def test_a_failing_model_does_not_stop_the_others_daily_scoring(served):
    """The shop's fraud model has no champion here: in the daily scoring run (as the schedule
    launches it, one partition) fraud's predictions fail with the reason, and churn's day is
    scored and its actuals swept all the same."""
    import dagster as dg

    from mlops_assets.definitions import load

    # A day inside every test world's calendar: the code location's partitions are built once per
    # process, from the first world it was imported with.
    day = dt.date(2025, 4, 5)
    job = load().resolve_job_def("daily_scoring_job")
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=day.isoformat(), raise_on_error=False
    )
    assert not result.success
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed == {"predictions__fraud__daily"}, failed
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "fraud" in message and "champion" in message, message
    done = {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert {"predictions/churn/daily", "predictions/churn/actuals"} <= done, done
    table = _table(served)
    assert (table["prediction_date"] == day).sum() > 500
