"""The embedded instance's event log (deploy/dagster/local/dagster.yaml -> LocalEventLogStorage)
records exactly what Dagster's own SQLite event log records, including a range run's per-partition
materializations (written as one batch), and reads back the same through Dagster's APIs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A range run of three partitioned assets and a check, the shape of the lakehouse's landing step;
# prints what the UI and the asset daemon read back.
SCRIPT = textwrap.dedent(
    """
    import json, time
    import dagster as dg

    days = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-03-02")

    @dg.multi_asset(
        specs=[dg.AssetSpec(k) for k in ("a", "b", "c")],
        partitions_def=days,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=False,
        check_specs=[dg.AssetCheckSpec("rows_positive", asset="a")],
    )
    def land(context):
        for key in ("a", "b", "c"):
            yield dg.MaterializeResult(asset_key=key, metadata={"rows": 7})
        yield dg.AssetCheckResult(asset_key="a", check_name="rows_positive", passed=True)

    job = dg.Definitions(assets=[land]).resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2025-01-01",
            "dagster/asset_partition_range_end": "2025-03-01",
        },
    )
    seconds = time.perf_counter() - started
    one = dg.materialize([land], instance=instance, partition_key="2025-01-15")
    records = instance.fetch_materializations(dg.AssetKey("b"), limit=1000).records
    check = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("a"), "rows_positive"), limit=1000
    )
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as T
    from dagster_shared.serdes import deserialize_value
    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(
            T.select().with_only_columns(
                T.c.asset_key, T.c.check_name, T.c.partition, T.c.execution_status,
                T.c.evaluation_event,
            )
        ).fetchall()
    check_rows = sorted(
        [[r[0], r[1], r[2] or "", r[3], deserialize_value(r[4]).dagster_event_type.value] for r in rows]
    )
    print(json.dumps({
        "check_rows": check_rows,
        "storage": type(instance.event_log_storage).__name__,
        "success": result.success and one.success,
        "materializations": len(records),
        "partitions": sorted(instance.get_materialized_partitions(dg.AssetKey("c"))),
        "metadata": sorted({r.asset_materialization.metadata["rows"].value for r in records}),
        "partition_tags": sorted({r.partition_key for r in records})[:3],
        "run_events": len(instance.all_logs(result.run_id)),
        "checks": len(check),
        "batch_size": __import__("os").environ.get("DAGSTER_EVENT_BATCH_SIZE"),
        "seconds": seconds,
    }))
    """
)


def _run(home, local: bool) -> dict:
    import json

    from mlops_assets.instance_storage import install_local_instance

    home.mkdir()
    if local:  # as `mlops prepare`, `make dev` and the demo install it
        install_local_instance(home)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("DAGSTER_EVENT_BATCH_SIZE", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("instances")
    return _run(root / "default", False), _run(root / "local", True)


def test_local_instance_uses_the_batching_event_log(both):
    default, local = both
    assert default["storage"] == "SqliteEventLogStorage"
    assert local["storage"] == "LocalEventLogStorage"
    assert local["batch_size"] == "500"  # set by the storage: Dagster batches only when it is


def test_an_installed_instance_reads_back_without_dagster_home(tmp_path):
    """Another process opening the home by path (as tests and scripts do) finds the runs: the
    installed config names the storage folder instead of following $DAGSTER_HOME."""
    import dagster as dg

    _run(tmp_path / "home", True)
    env_home = os.environ.pop("DAGSTER_HOME", None)
    try:
        with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
            ranged = [r for r in instance.get_runs() if len(instance.all_logs(r.run_id)) > 100]
            assert len(ranged) == 1
            assert instance.get_materialized_partitions(dg.AssetKey("a"))
    finally:
        if env_home is not None:
            os.environ["DAGSTER_HOME"] = env_home


def test_range_run_reads_back_like_dagsters_own_sqlite_storage(both):
    default, local = both
    assert local["success"] and default["success"]
    # 60 days of the range run + the single-partition run (the UI's Materialize of one day).
    assert local["materializations"] == default["materializations"] == 61
    assert local["partitions"] == default["partitions"]
    assert len(local["partitions"]) == 60
    assert local["metadata"] == default["metadata"] == [7]
    assert (
        local["partition_tags"]
        == default["partition_tags"]
        == [
            "2025-01-01",
            "2025-01-02",
            "2025-01-03",
        ]
    )
    assert local["run_events"] == default["run_events"]
    assert local["checks"] == default["checks"] > 0
    # The check's rows as Dagster's storage writes them (one per planned partition).
    assert local["check_rows"] == default["check_rows"]
    assert len(local["check_rows"]) >= 60
