"""The cache of pyiceberg's `Transaction.table_metadata` (lakehouse/pyiceberg_fixes.py) on a real
SQL catalog: installed by opening a catalog, never stale (staged updates and refreshes show), the
same answers as pyiceberg's own property, and one append computing the metadata a few times
instead of ~20."""

import datetime as dt

import pytest
from pyiceberg.table import Transaction

from mlops_assets.lakehouse import pyiceberg_fixes
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.serving.inference_log import append_with_retry, rows_to_arrow

AT = int(dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)


def _rows(tag: str, n: int = 3):
    return rows_to_arrow(
        [(f"{tag}-{i}", i, "{}", 0.5, 0, "low", "s", "3", "c", 1.0, AT + i) for i in range(n)]
    )


@pytest.fixture
def table(resources):
    return INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")


def _is_cached() -> bool:
    return Transaction.__dict__["table_metadata"].fget is pyiceberg_fixes._cached_table_metadata


def _same(a, b) -> bool:
    """Equal but for `last_updated_ms`, which each replay of a staged update sets to now."""
    return a.model_copy(update={"last_updated_ms": 0}) == b.model_copy(
        update={"last_updated_ms": 0}
    )


def test_opening_a_catalog_installs_it_once(table):
    assert _is_cached()
    assert pyiceberg_fixes.install() is False  # already there


def test_reads_are_cached_until_an_update_is_staged_or_the_table_refreshed(table):
    from pyiceberg.table.update import update_table_metadata

    append_with_retry(table, _rows("a"))
    tx = table.transaction()
    first = tx.table_metadata
    assert tx.table_metadata is first  # a cache hit: no copy
    tx.set_properties({"owner": "tests"})
    staged = tx.table_metadata
    assert staged is not first and staged.properties["owner"] == "tests"
    expected = update_table_metadata(table.metadata, tx._updates)  # pyiceberg's answer
    assert _same(staged, expected)

    other = INFERENCE_LOG.open(table.catalog, "churn")
    append_with_retry(other, _rows("b"))  # another writer's commit
    table.refresh()
    fresh = tx.table_metadata
    assert fresh is not staged and len(fresh.snapshots) == 2  # the refresh shows
    assert fresh.properties["owner"] == "tests"  # with the staged update replayed on it
    tx.commit_transaction()
    table.refresh()
    assert table.properties["owner"] == "tests" and len(table.snapshots()) == 2


def test_an_append_computes_the_metadata_a_few_times_not_twenty(table, monkeypatch):
    import pyiceberg.table.update as update

    append_with_retry(table, _rows("warm"))
    calls = []
    original = update.update_table_metadata

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(update, "update_table_metadata", counted)
    append_with_retry(table, _rows("cached"))
    cached = len(calls)
    pyiceberg_fixes.uninstall()
    try:
        calls.clear()
        monkeypatch.setattr("pyiceberg.table.update_table_metadata", counted)
        append_with_retry(table, _rows("plain"))
        plain = len(calls)
    finally:
        pyiceberg_fixes.install()
    assert cached <= 6 < 15 <= plain, (cached, plain)
    table.refresh()
    assert table.scan().to_arrow().num_rows == 9  # every append landed, once
