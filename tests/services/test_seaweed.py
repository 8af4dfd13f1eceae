"""SeaweedFS of the services profile, for real: S3 and the Iceberg REST catalog on 127.0.0.1,
reached through the production code path (`RestCatalogResource`, the inference log's append)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from mlops_assets.lakehouse.catalog import ensure_namespace
from mlops_assets.processes import environment
from mlops_assets.resources import RestCatalogResource
from mlops_assets.services import (
    Seaweed,
    SeaweedPorts,
    seaweed_state,
    seaweed_status,
    start_seaweed,
    stop_seaweed,
)
from mlops_assets.serving.inference_log import append_with_retry
from mlops_assets.testing import free_port_offset

SCHEMA = pa.schema([("writer", pa.int32()), ("row", pa.int32()), ("note", pa.string())])


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Seaweed:
    node = Seaweed(
        folder=tmp_path_factory.mktemp("services") / "seaweedfs",
        access_key="tester",
        secret_key="tester-secret",
        ports=SeaweedPorts().shifted(free_port_offset()),
    )
    start_seaweed(node)
    # The production catalog reads S3 credentials the way pods get them: AWS variables.
    with environment(
        {
            "AWS_ACCESS_KEY_ID": node.access_key,
            "AWS_SECRET_ACCESS_KEY": node.secret_key,
            "AWS_REGION": "us-east-1",
        }
    ):
        yield node
    assert stop_seaweed(node)
    assert seaweed_state(node) is None


def _catalog(node: Seaweed):
    resource = RestCatalogResource(
        uri=node.iceberg_uri,
        warehouse=node.warehouse,
        credential=f"{node.access_key}:{node.secret_key}",
        s3_endpoint=node.s3_endpoint,
    )
    return resource.catalog()


def _rows(writer: int, n: int) -> pa.Table:
    return pa.table(
        {
            "writer": pa.array([writer] * n, pa.int32()),
            "row": pa.array(range(n), pa.int32()),
            "note": [f"w{writer}-r{i}" for i in range(n)],
        },
        schema=SCHEMA,
    )


def test_an_iceberg_table_round_trips_through_the_rest_catalog_and_s3(node):
    catalog = _catalog(node)
    ensure_namespace(catalog, "roundtrip")
    table = catalog.create_table("roundtrip.notes", schema=SCHEMA)
    table.append(_rows(1, 25))
    again = _catalog(node).load_table("roundtrip.notes")  # a second client sees the commit
    assert again.metadata_location.startswith(node.warehouse)
    assert again.scan().to_arrow().sort_by("row").equals(_rows(1, 25))
    states = {s.name: s for s in seaweed_status(node)}
    assert states["s3"].ok and states["iceberg-rest"].ok
    assert "roundtrip" in states["iceberg-rest"].detail


def test_s3_keeps_files_and_refuses_a_wrong_secret(node):
    host = node.s3_endpoint.removeprefix("http://")
    s3 = fs.S3FileSystem(
        access_key=node.access_key,
        secret_key=node.secret_key,
        endpoint_override=host,
        scheme="http",
        region="us-east-1",
    )
    path = f"{node.files_bucket}/landing/orders/2025-01-01.parquet"
    pq.write_table(_rows(7, 10), path, filesystem=s3)
    assert pq.read_table(path, filesystem=s3).equals(_rows(7, 10))
    wrong = fs.S3FileSystem(
        access_key=node.access_key,
        secret_key="not-the-secret",
        endpoint_override=host,
        scheme="http",
        region="us-east-1",
    )
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        pq.read_table(path, filesystem=wrong)


def test_twenty_concurrent_appends_lose_and_duplicate_nothing(node):
    catalog = _catalog(node)
    ensure_namespace(catalog, "concurrency")
    catalog.create_table("concurrency.appends", schema=SCHEMA)
    writers, rows_each = 20, 40
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(writer: int) -> None:
        try:
            table = _catalog(node).load_table("concurrency.appends")  # a client per writer
            start.wait()
            append_with_retry(table, _rows(writer, rows_each))
        except BaseException as err:  # reported below, with the others
            errors.append(err)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    table = _catalog(node).load_table("concurrency.appends")
    got = table.scan().to_pandas()
    assert len(got) == writers * rows_each
    assert not got.duplicated(["writer", "row"]).any()
    assert sorted(got["writer"].unique()) == list(range(writers))
    appends = [s for s in table.snapshots() if s.summary and s.summary.operation.value == "append"]
    assert len(appends) == writers  # one commit per writer: no retry committed twice


def test_a_writers_next_commit_carries_the_upkeep_pause(node):
    """The writer learns of an upkeep's pause from its own commit's metadata, with no extra read
    (lakehouse/lease.py): the REST catalog applies a commit on top of the current metadata."""
    from mlops_assets.lakehouse.lease import PauseForUpkeep, pause_left

    catalog = _catalog(node)
    ensure_namespace(catalog, "pause")
    catalog.create_table("pause.log", schema=SCHEMA)
    writer = _catalog(node).load_table("pause.log")
    append_with_retry(writer, _rows(0, 3))
    with PauseForUpkeep(_catalog(node).load_table("pause.log"), seconds=30) as pause:
        pause.hold()
        assert pause_left(writer) == 0.0  # not seen yet
        append_with_retry(writer, _rows(1, 3))
        assert 20 < pause_left(writer) <= 30
    writer.refresh()
    assert pause_left(writer) == 0.0  # given back
    assert writer.scan().to_arrow().num_rows == 6
