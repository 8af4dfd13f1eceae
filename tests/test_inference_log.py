"""The inference log's Iceberg writes under contention (real pyiceberg SQL catalog on SQLite)."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from mlops_assets.serving.iceberg import catalog
from mlops_assets.serving.inference_log import append_with_retry, ensure_table, rows_to_arrow


def _rows(writer: int, n: int) -> list[tuple]:
    at = int(dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    return [
        (f"w{writer}-r{i}", i, "{}", 0.5, 1, "high", "score", "1", "champion", 1.0, at + i)
        for i in range(n)
    ]


def test_twenty_concurrent_appends_lose_and_duplicate_nothing(settings):
    ensure_table(catalog(settings), "churn")

    def write(writer: int) -> int:
        # Each writer has its own catalog and table handle, as separate servers would.
        table = catalog(settings).load_table("predictions.churn_online")
        return append_with_retry(table, rows_to_arrow(_rows(writer, 25)))

    with ThreadPoolExecutor(max_workers=20) as pool:
        attempts = list(pool.map(write, range(20)))
    table = catalog(settings).load_table("predictions.churn_online")
    frame = table.scan().to_pandas()
    assert len(frame) == 20 * 25
    assert frame["request_id"].is_unique
    assert set(frame["request_id"]) == {f"w{w}-r{i}" for w in range(20) for i in range(25)}
    assert len(table.snapshots()) == 20  # one commit per writer: no lost and no doubled commit
    assert max(attempts) > 1, "the writers never raced; the test did not exercise the retry"


def test_rows_keep_their_types_and_partition_by_request_day(settings):
    table = ensure_table(catalog(settings), "churn")
    append_with_retry(table, rows_to_arrow(_rows(0, 3)))
    frame = table.scan().to_pandas()
    assert frame["request_date"].tolist() == [dt.date(2025, 6, 1)] * 3
    assert (
        frame["requested_at"]
        == pd.Timestamp("2025-06-01", tz="UTC") + pd.to_timedelta(frame["customer_id"], "us")
    ).all()
    assert [f.name for f in table.spec().fields] == ["request_date"]
