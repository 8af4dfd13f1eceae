"""The inference log's Iceberg writes under contention (real pyiceberg SQL catalog on SQLite)."""

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa

from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.serving.inference_log import append_with_retry, rows_to_arrow


def _rows(writer: int, n: int) -> list[tuple]:
    at = int(dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    return [
        (f"w{writer}-r{i}", i, "{}", 0.5, 1, "high", "score", "1", "champion", 1.0, at + i)
        for i in range(n)
    ]


def test_twenty_concurrent_appends_lose_and_duplicate_nothing(resources):
    INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")

    start = threading.Barrier(20)

    def write(writer: int) -> int:
        # Each writer has its own catalog and table handle, as separate servers would.
        table = resources.lakehouse.catalog().load_table(INFERENCE_LOG.name("churn"))
        rows = rows_to_arrow(_rows(writer, 25))
        start.wait(60)  # all at once: an append takes ~30 ms, a staggered start might not race
        return append_with_retry(table, rows)

    with ThreadPoolExecutor(max_workers=20) as pool:
        attempts = list(pool.map(write, range(20)))
    table = resources.lakehouse.catalog().load_table(INFERENCE_LOG.name("churn"))
    frame = table.scan().to_pandas()
    assert len(frame) == 20 * 25
    assert frame["request_id"].is_unique
    assert set(frame["request_id"]) == {f"w{w}-r{i}" for w in range(20) for i in range(25)}
    assert len(table.snapshots()) == 20  # one commit per writer: no lost and no doubled commit
    assert max(attempts) > 1, "the writers never raced; the test did not exercise the retry"


def test_rows_keep_their_types_and_partition_by_request_day(resources):
    table = INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")
    append_with_retry(table, rows_to_arrow(_rows(0, 3)))
    frame = table.scan().to_pandas()
    assert frame["request_date"].tolist() == [dt.date(2025, 6, 1)] * 3
    assert (
        frame["requested_at"]
        == pd.Timestamp("2025-06-01", tz="UTC") + pd.to_timedelta(frame["customer_id"], "us")
    ).all()
    assert [f.name for f in table.spec().fields] == ["request_date"]


def test_prediction_timestamp_is_the_request_ts_else_the_arrival(resources):
    table = INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")
    arrival = int(dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC).timestamp() * 1_000_000)
    as_of = int(dt.datetime(2025, 5, 30, tzinfo=dt.UTC).timestamp() * 1_000_000)
    base = ("r", 0, "{}", 0.5, 1, "high", "score", "1", "champion", 1.0)
    given = (*base[:1], 1, *base[2:], arrival, as_of)  # the client gave request_ts
    bare = (*base[:1], 2, *base[2:], arrival)  # an 11-value row: valid as of its arrival
    append_with_retry(table, rows_to_arrow([given, bare]))
    frame = table.scan().to_pandas().set_index("customer_id")
    assert frame.loc[1, "prediction_timestamp"] == pd.Timestamp("2025-05-30", tz="UTC")
    assert frame.loc[2, "prediction_timestamp"] == pd.Timestamp("2025-06-01 12:00", tz="UTC")
    assert (frame["requested_at"] == pd.Timestamp("2025-06-01 12:00", tz="UTC")).all()
    assert frame["request_date"].tolist() == [dt.date(2025, 6, 1)] * 2


def test_a_table_with_the_old_schema_is_evolved_not_broken(resources):
    """A table created with the first schema (before prediction_timestamp, model_name and
    entity_keys existed, customer_id required) gains the columns (older rows read null) and an
    optional customer_id, even when several writers open it at once."""
    from mlops_assets.lakehouse.catalog import partitioned_table
    from mlops_assets.lakehouse.migrations import INFERENCE_LOG_ADDED

    old_schema = pa.schema(
        [
            f.with_nullable(False) if f.name == "customer_id" else f
            for f in INFERENCE_LOG.schema
            if f.name not in INFERENCE_LOG_ADDED
        ]
    )
    name = INFERENCE_LOG.name("churn")
    old = partitioned_table(resources.lakehouse.catalog(), name, old_schema, "request_date")
    old_rows = rows_to_arrow(_rows(0, 3)).select(old_schema.names).cast(old_schema)
    append_with_retry(old, old_rows)
    assert "prediction_timestamp" not in {f.name for f in old.schema().fields}

    with ThreadPoolExecutor(max_workers=6) as pool:
        tables = list(
            pool.map(lambda _: INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn"), range(6))
        )
    for table in tables:
        assert "prediction_timestamp" in {f.name for f in table.schema().fields}
    table = resources.lakehouse.catalog().load_table(name)
    assert [f.name for f in table.schema().fields] == INFERENCE_LOG.schema.names
    assert not table.schema().find_field("customer_id").required
    assert [f.name for f in table.spec().fields] == ["request_date"]

    append_with_retry(table, rows_to_arrow(_rows(1, 2)))
    frame = table.scan().to_pandas()
    old_part, new_part = (
        frame[frame["request_id"].str.startswith("w0-")],
        frame[frame["request_id"].str.startswith("w1-")],
    )
    assert len(old_part) == 3 and old_part["prediction_timestamp"].isna().all()
    assert old_part["model_name"].isna().all() and old_part["entity_keys"].isna().all()
    assert (new_part["prediction_timestamp"] == new_part["requested_at"]).all()
    assert len(table.snapshots()) == 2  # the evolution rewrote no data
