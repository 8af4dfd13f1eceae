"""As-of semantics of the predictions table (prediction_timestamp is the moment a prediction is for,
scored_at the run's wall clock, the label delay never negative), NULL for "all versions" / "no
feature" in the monitoring table, the timeline's occurred_at, and the evolution of tables that an
earlier version wrote into users' data folders."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_assets.lakehouse.catalog import partitioned_table
from mlops_assets.lakehouse.tables import MONITORING, PREDICTIONS, TIMELINE
from mlops_assets.model_config import model_configs
from mlops_assets.serving import batch
from mlops_assets.settings import PROJECT_ROOT

CONFIG = model_configs()["churn"]
DAYS = [dt.date(2025, 4, 10), dt.date(2025, 4, 11)]
WALL_CLOCK = dt.datetime(2025, 5, 20, 3, 0, 7, tzinfo=dt.UTC)  # a backfill, long after the days
LABEL_DELAY = (PROJECT_ROOT / "analytics" / "label_delay.sql").read_text()


class _Model:
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-X["x"].to_numpy()))
        return np.column_stack([1 - p, p])


def _features(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "plan": rng.choice(["free", "premium"], n),
            "segment": rng.choice(["new", "loyal"], n),
            "open_ticket_count": rng.integers(0, 3, n),
            "x": rng.normal(0, 1, n),
        }
    )


def _orders() -> pd.DataFrame:
    """Orders through the end of May: every day above has its 30-day window in the data."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "ordered_at": pd.to_datetime(
                ["2025-04-15 10:00", "2025-05-02 08:00", "2025-03-01 09:00", "2025-05-31 12:00"]
            ),
        }
    )


class _Orders:
    """A DuckDB warehouse holding the orders above as silver.fct_orders (what fill_actuals reads
    for a `no_event` model)."""

    def __init__(self):
        import duckdb

        self.con = duckdb.connect()
        self.con.register("orders_frame", _orders())
        self.con.execute("create schema silver")
        self.con.execute("create table silver.fct_orders as select * from orders_frame")

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()


def _scored(day: dt.date) -> pa.Table:
    return batch.score(CONFIG, _Model(), "7", _features(), day, WALL_CLOCK)


def _table(catalog) -> pd.DataFrame:
    table = catalog.load_table(PREDICTIONS.name(CONFIG.name))
    return table.scan().to_pandas().sort_values(["prediction_date", "customer_id"])


def test_prediction_timestamp_is_the_as_of_time_and_scored_at_the_wall_clock(resources):
    cat = resources.lakehouse.catalog()
    table = PREDICTIONS.open(cat, CONFIG.name)
    batch.write_days(table, DAYS, pa.concat_tables([_scored(day) for day in DAYS]))
    batch.fill_actuals(cat, _Orders(), CONFIG)
    rows = _table(cat)
    for day in DAYS:
        day_rows = rows[rows["prediction_date"] == day]
        as_of = pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")
        assert (day_rows["prediction_timestamp"] == as_of).all()
        assert (day_rows["scored_at"] == pd.Timestamp(WALL_CLOCK)).all()
        # The actual is known when the 30-day window after the as-of time has passed.
        assert (day_rows["actual_timestamp"] == as_of + pd.Timedelta(days=30)).all()
    assert rows["actual"].notna().all()
    # Analysts see one bucket per scored day, and a label delay of exactly the window.
    buckets = resources.warehouse.analyst_sql(
        "SELECT date_trunc('day', prediction_timestamp) AS day, count(*) AS n "
        "FROM iceberg.predictions.churn_daily GROUP BY 1 ORDER BY 1",
    )
    assert len(buckets) == len(DAYS)
    delay = resources.warehouse.analyst_sql(LABEL_DELAY)
    assert (delay["min_label_delay_days"] == 30).all()
    assert (delay["avg_label_delay_days"] == 30.0).all()
    # "Scored since" filters on the wall clock (what the canary sensor reads).
    since = table.refresh().scan(
        row_filter=f"scored_at >= '{WALL_CLOCK.isoformat()}'", selected_fields=("scored_at",)
    )
    assert len(since.to_arrow()) == len(rows)


def _old_schema(schema: pa.Schema, drop: str) -> pa.Schema:
    return pa.schema([f for f in schema if f.name != drop])


def test_a_predictions_table_from_before_scored_at_is_evolved_not_broken(resources):
    cat = resources.lakehouse.catalog()
    old_schema = _old_schema(PREDICTIONS.schema, "scored_at")
    old = partitioned_table(cat, PREDICTIONS.name(CONFIG.name), old_schema, "prediction_date")
    # The old meaning: prediction_timestamp was the scoring run's wall clock.
    rows = _scored(DAYS[0]).drop_columns(["prediction_timestamp", "scored_at"])
    wall = pa.array([WALL_CLOCK] * rows.num_rows, pa.timestamp("us", tz="UTC"))
    column = pa.field("prediction_timestamp", wall.type, nullable=False)
    old.append(rows.add_column(9, column, wall).select(old_schema.names))

    table = PREDICTIONS.open(cat, CONFIG.name)
    # scored_at beside the other time
    assert table.schema().column_names == PREDICTIONS.schema.names
    evolved = _table(cat)
    assert (evolved["scored_at"] == pd.Timestamp(WALL_CLOCK)).all()
    as_of = pd.Timestamp(DAYS[0] + dt.timedelta(days=1), tz="UTC")
    assert (evolved["prediction_timestamp"] == as_of).all()
    snapshot = table.current_snapshot().snapshot_id
    assert PREDICTIONS.open(cat, CONFIG.name).current_snapshot().snapshot_id == snapshot  # once

    # Scoring, re-scoring and actuals keep working on the evolved table.
    batch.write_days(table, DAYS, pa.concat_tables([_scored(day) for day in DAYS]))
    batch.fill_actuals(cat, _Orders(), CONFIG)
    after = _table(cat)
    assert len(after) == 2 * len(_features()) and after["prediction_id"].is_unique
    assert (resources.warehouse.analyst_sql(LABEL_DELAY)["min_label_delay_days"] >= 0).all()


def test_monitoring_rows_use_null_for_all_versions_and_no_feature(resources):
    from mlops_assets.monitoring import plots
    from mlops_assets.monitoring.results import MonitorResult, read_table, write_result

    cat = resources.lakehouse.catalog()
    # A table written with '' for "all versions" / "no feature" (required columns).
    old_schema = pa.schema(
        [
            f.with_nullable(False) if f.name in ("feature", "model_version") else f
            for f in MONITORING.schema
        ]
    )
    old = partitioned_table(cat, MONITORING.name(CONFIG.name), old_schema, "day")
    old.append(
        pa.Table.from_pylist(
            [
                {
                    "day": dt.date(2025, 5, 1),
                    "monitor": "performance",
                    "metric": metric,
                    "feature": "",
                    "model_version": version,
                    "value": value,
                    "threshold": 0.7,
                    "breached": False,
                    "detail": "",
                    "computed_at": WALL_CLOCK,
                }
                for metric, version, value in (
                    ("status", "", 0.0),
                    ("roc_auc", "", 0.81),
                    ("roc_auc", "7", 0.8),
                )
            ],
            schema=old_schema,
        )
    )
    table = MONITORING.open(cat, CONFIG.name)
    assert not table.schema().find_field("feature").required
    assert not table.schema().find_field("model_version").required

    result = MonitorResult("performance", dt.date(2025, 5, 2), "ok", {})
    result.row("roc_auc", 0.83, 0.7)  # all versions
    result.row("roc_auc", 0.82, 0.7, version="7")
    write_result(cat, CONFIG, result)
    rows = read_table(cat, CONFIG)
    assert "" not in set(rows["feature"].dropna()) | set(rows["model_version"].dropna())
    overall = rows[(rows["metric"] == "roc_auc") & rows["model_version"].isna()]
    assert sorted(overall["value"]) == [0.81, 0.83]
    assert plots.metric_over_time(rows, "performance") is not None
    answer = resources.warehouse.analyst_sql(
        "SELECT count(*) AS n FROM iceberg.monitoring.churn_daily "
        "WHERE metric = 'roc_auc' AND model_version IS NULL AND feature IS NULL",
    )
    assert answer["n"].tolist() == [2]


def test_the_timeline_column_is_occurred_at_also_for_an_old_table(resources):
    from mlops_assets.demo.timeline import Timeline, write_timeline

    cat = resources.lakehouse.catalog()
    cat.create_namespace("monitoring")
    cat.create_table(
        TIMELINE.name(),
        schema=pa.schema(  # the schema write_timeline used to create
            [
                pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
                pa.field("data_day", pa.date32(), nullable=True),
                pa.field("event", pa.string(), nullable=False),
                pa.field("detail", pa.string(), nullable=False),
                pa.field("run_id", pa.string(), nullable=False),
                pa.field("model_version", pa.string(), nullable=False),
            ]
        ),
    )
    timeline = Timeline()
    timeline.add("scored", "2025-04-10 .. 2025-04-11", "run-1", "7", DAYS[1])
    timeline.add("monitored", "no degradation", "run-2", "7")
    assert write_timeline(cat, timeline) == "monitoring.timeline"
    names = cat.load_table("monitoring.timeline").schema().column_names
    assert "occurred_at" in names and "at" not in names
    rows = resources.warehouse.analyst_sql(
        "select * from iceberg.monitoring.timeline order by occurred_at"
    )
    assert rows["event"].tolist() == ["scored", "monitored"]
    assert rows.columns[0] == "occurred_at"


@pytest.mark.parametrize("column", ["prediction_timestamp", "scored_at"])
def test_the_schema_documents_both_times(column):
    assert column in PREDICTIONS.schema.names
