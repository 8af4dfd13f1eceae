"""Incremental reads of the inference log on a real pyiceberg SQL catalog: only appended rows are
new, a compaction's rewrite is not, an expired cursor falls back to time, a backlog is capped."""

import datetime as dt

import pyarrow as pa
import pytest

from mlops_assets.lakehouse.catalog import sql_catalog
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.monitoring.stream import StreamCursor, read_new_rows
from mlops_assets.serving.inference_log import append_with_retry, rows_to_arrow

NAME = INFERENCE_LOG.name("churn")
T0 = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def _batch(first: int, n: int) -> pa.Table:
    """`n` logged rows, request ids r<first>.., one second apart from T0 + first seconds."""
    rows = []
    for i in range(first, first + n):
        micros = int((T0 + dt.timedelta(seconds=i)).timestamp() * 1_000_000)
        rows.append(
            (f"r{i}", i, '{"x": 1.0}', 0.5, 0, "low", "", "1", "champion", 1.0, micros, micros)
        )
    return rows_to_arrow(rows)


@pytest.fixture
def log(tmp_path):
    catalog = sql_catalog(tmp_path / "lake")
    return catalog, INFERENCE_LOG.open(catalog, "churn")


def _ids(new) -> list[str]:
    return sorted(new.rows["request_id"].to_pylist(), key=lambda r: int(r[1:]))


def test_no_table_yet_reads_nothing(tmp_path):
    new = read_new_rows(sql_catalog(tmp_path / "lake"), NAME, StreamCursor(), 100)
    assert new.mode == "no_table" and len(new.rows) == 0 and new.cursor == StreamCursor()


def test_only_rows_appended_since_the_cursor_are_read(log):
    catalog, table = log
    append_with_retry(table, _batch(0, 3))
    append_with_retry(table, _batch(3, 2))
    first = read_new_rows(catalog, NAME, StreamCursor(), 100, ("request_id", "features"))
    assert _ids(first) == ["r0", "r1", "r2", "r3", "r4"] and first.snapshots == 2
    assert first.rows.column_names == ["request_id", "features", "requested_at"]
    again = read_new_rows(catalog, NAME, first.cursor, 100)
    assert again.mode == "empty" and len(again.rows) == 0
    append_with_retry(table, _batch(5, 4))
    later = read_new_rows(catalog, NAME, first.cursor, 100)
    assert _ids(later) == ["r5", "r6", "r7", "r8"]
    assert later.cursor.last_seen_us == int((T0 + dt.timedelta(seconds=8)).timestamp() * 1e6)


def test_a_compaction_rewrite_is_not_new_rows(log):
    catalog, table = log
    for k in range(4):
        append_with_retry(table, _batch(k * 2, 2))
    cursor = read_new_rows(catalog, NAME, StreamCursor(), 100).cursor
    # One commit that deletes the small files and adds one rewritten file (operation overwrite).
    files = list(table.scan().plan_files())
    rewritten = table.scan().to_arrow()
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    with table.transaction() as tx, tx.update_snapshot().overwrite() as rewrite:
        for task in files:
            rewrite.delete_data_file(task.file)
        for data_file in _dataframe_to_data_files(tx.table_metadata, rewritten, table.io):
            rewrite.append_data_file(data_file)
    assert table.current_snapshot().summary.operation.value == "overwrite"
    append_with_retry(table, _batch(8, 1))
    new = read_new_rows(catalog, NAME, cursor, 100)
    assert _ids(new) == ["r8"]
    # pyiceberg's overwrite(): a delete, then an append of the same rows: still not new.
    cursor = new.cursor
    table.overwrite(table.scan().to_arrow())
    append_with_retry(table, _batch(9, 2))
    assert _ids(read_new_rows(catalog, NAME, cursor, 100)) == ["r9", "r10"]
    assert len(table.scan().to_arrow()) == 11


def test_an_expired_cursor_falls_back_to_the_last_row_seen(log):
    catalog, table = log
    append_with_retry(table, _batch(0, 3))
    cursor = read_new_rows(catalog, NAME, StreamCursor(), 100).cursor
    append_with_retry(table, _batch(3, 2))
    gone = StreamCursor(snapshot_id=123456789, last_seen_us=cursor.last_seen_us)
    new = read_new_rows(catalog, NAME, gone, 100)
    assert new.mode == "timestamp" and _ids(new) == ["r3", "r4"]
    assert new.cursor.snapshot_id == table.current_snapshot().snapshot_id
    # With a pyiceberg expiry of the cursor's snapshot, the same.
    old_id = cursor.snapshot_id
    append_with_retry(table, _batch(5, 1))
    table.maintenance.expire_snapshots().by_id(old_id).commit()
    assert table.metadata.snapshot_by_id(old_id) is None
    expired = read_new_rows(catalog, NAME, cursor, 100)
    assert expired.mode == "timestamp" and _ids(expired) == ["r3", "r4", "r5"]


def test_a_backlog_is_capped_to_its_newest_rows(log):
    catalog, table = log
    for k in range(5):
        append_with_retry(table, _batch(k * 10, 10))
    new = read_new_rows(catalog, NAME, StreamCursor(), 25)
    assert _ids(new) == [f"r{i}" for i in range(30, 50)]
    assert new.skipped_rows == 30
    big = read_new_rows(catalog, NAME, StreamCursor(), 5)  # one snapshot over the cap
    assert _ids(big) == [f"r{i}" for i in range(45, 50)] and big.skipped_rows == 45
