"""Upkeep of the inference log on a real pyiceberg SQL catalog: compaction (rows, content, files,
partitions), snapshot expiry with time travel inside the retention, compaction while the real
inference-log writer process appends, and the Dagster asset, check, job and schedule."""

import datetime as dt
import itertools
import threading
import time
from collections import Counter

import dagster as dg
import pytest

from mlops_assets.lakehouse.maintenance import (
    LiveFile,
    compact,
    ensure_properties,
    expire_snapshots,
    is_compaction,
    live_files,
    plan_compaction,
    snapshots_to_expire,
)
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.serving.inference_log import InferenceLog, append_with_retry, rows_to_arrow

DAY = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def _batch(tag: str, n: int, at: dt.datetime) -> list[tuple]:
    micros = int(at.timestamp() * 1_000_000)
    return [
        (
            f"{tag}-{i}",
            i,
            '{"x": 1}',
            i / n,
            i % 2,
            "low",
            "score",
            "3",
            "champion",
            1.5,
            micros + i,
        )
        for i in range(n)
    ]


def _table(resources):
    return INFERENCE_LOG.open(resources.lakehouse.catalog(), "churn")


def _fill(table, batches: int, rows: int, days: int = 2) -> None:
    """`batches` one-second flushes spread over `days` request days."""
    for b in range(batches):
        at = DAY + dt.timedelta(days=b % days, seconds=b)
        append_with_retry(table, rows_to_arrow(_batch(f"b{b}", rows, at)))


def _content(table) -> Counter:
    frame = table.scan().to_pandas()
    return Counter(map(tuple, frame.astype(str).itertuples(index=False)))


def test_plan_takes_the_small_files_of_busy_partitions_only():
    small = [LiveFile(f"a{i}", (1,), 100, 10) for i in range(3)]
    big = LiveFile("big", (1,), 10_000, 1000)
    lonely = LiveFile("b0", (2,), 100, 10)
    deleted = LiveFile("c0", (3,), 100, 10, has_deletes=True)
    plan = plan_compaction([*small, big, lonely, deleted, LiveFile("c1", (3,), 100, 1)], 1000, 2)
    assert plan == {(1,): small}  # the big file, a lone file, a file with deletes: left alone
    assert plan_compaction(small, 1000, 4) == {}


def test_compaction_keeps_every_row_and_partition_in_fewer_files(resources):
    table = _table(resources)
    _fill(table, batches=40, rows=25)
    before, files_before = _content(table), live_files(table)
    partitions_before = {t.file.partition for t in files_before.values()}

    result = compact(table, target_file_bytes=64 << 20, min_files=5, sort_by="requested_at")

    table = resources.lakehouse.catalog().load_table(INFERENCE_LOG.name("churn"))
    assert _content(table) == before  # same rows, as a multiset
    after = live_files(table)
    assert (len(files_before), len(after)) == (40, 2)  # one file per request day
    assert {t.file.partition for t in after.values()} == partitions_before
    assert result.files_rewritten == 40 and result.files_written == 2
    assert result.rows_before == result.rows_after == 1000
    assert result.partitions == ["request_date=2025-06-01", "request_date=2025-06-02"]
    snapshot = table.current_snapshot()
    assert is_compaction(snapshot) and snapshot.summary.operation.value == "overwrite"
    assert result.snapshot_id == snapshot.snapshot_id
    assert snapshot.summary["added-records"] == snapshot.summary["deleted-records"] == "1000"
    frame = table.scan(row_filter="request_date = '2025-06-01'").to_pandas()
    assert frame["requested_at"].is_monotonic_increasing  # each file sorted by request time

    again = compact(table, target_file_bytes=64 << 20, min_files=5)
    assert again.snapshot_id is None and again.files_rewritten == 0  # nothing left to do


def test_expiry_keeps_the_current_snapshot_and_time_travel_within_retention(resources):
    table = _table(resources)
    _fill(table, batches=12, rows=5, days=1)
    compact(table, target_file_bytes=64 << 20, min_files=2)
    table.refresh()
    snapshots = table.snapshots()
    recent = snapshots[-4]  # the cutoff falls just before it
    rows_then = table.scan(snapshot_id=recent.snapshot_id).to_arrow().num_rows
    cutoff = dt.datetime.fromtimestamp(recent.timestamp_ms / 1000, dt.UTC)

    result = expire_snapshots(table, older_than=cutoff, retain_last=2)

    table.refresh()
    kept = [s.snapshot_id for s in table.snapshots()]
    assert kept == [s.snapshot_id for s in snapshots if s.timestamp_ms >= recent.timestamp_ms]
    assert result.snapshots_expired == len(snapshots) - len(kept) > 0
    assert table.current_snapshot().snapshot_id == snapshots[-1].snapshot_id
    assert table.scan(snapshot_id=recent.snapshot_id).to_arrow().num_rows == rows_then
    assert table.scan().to_arrow().num_rows == 60  # files still in use were not removed
    assert result.orphan_files_removed > 0  # manifest lists of the expired snapshots

    everything = expire_snapshots(table, dt.datetime.now(dt.UTC), retain_last=1)
    table.refresh()
    assert [s.snapshot_id for s in table.snapshots()] == [snapshots[-1].snapshot_id]
    assert everything.orphan_files_removed >= 12  # the compacted small files are gone too
    assert table.scan().to_arrow().num_rows == 60


def test_snapshots_to_expire_spares_heads_and_the_newest():
    stamps = [(1, 100), (2, 200), (3, 300), (4, 400)]
    assert snapshots_to_expire(stamps, {4}, older_than_ms=350, retain_last=1) == [3, 2, 1]
    assert snapshots_to_expire(stamps, {4}, older_than_ms=350, retain_last=3) == [1]
    assert snapshots_to_expire(stamps, {2}, older_than_ms=1000, retain_last=1) == [3, 1]


def test_compaction_while_the_inference_log_writer_appends(resources, tmp_path, caplog):
    """The server's writer process flushes every 200 ms (5x the real rate) while compaction runs
    in a loop, until three compactions committed and one lost a commit race to the writer: every
    row written is in the table exactly once, none was spooled, the compactions kept their row
    counts, and an incremental reader sees every appended row once."""
    catalog = resources.lakehouse.catalog()
    ensure_properties(INFERENCE_LOG.open(catalog, "churn"))  # as the maintenance job leaves it
    writer = InferenceLog(dict(catalog.properties), tmp_path / "spool", "churn", 40, 0.2)
    sent: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        for i in itertools.takewhile(lambda _: not stop.is_set(), itertools.count()):
            result = {"score": [0.4], "prediction": [0], "risk_band": ["low"], "rule": ["score"]}
            result |= {"model_version": ["3"], "arm": ["champion"], "customer_id": [i]}
            writer.record(f"req-{i}", result, [{"x": i}], 0.001, DAY + dt.timedelta(seconds=i))
            sent.append(f"req-{i}")
            time.sleep(0.003)

    def raced() -> bool:  # a compaction commit lost to the writer (and was rebased or redone)
        lost = "Commit failed due to a concurrent update" in caplog.text
        return lost or any(r.attempts > 1 for r in results)

    server = threading.Thread(target=serve)
    server.start()
    table = catalog.load_table(INFERENCE_LOG.name("churn"))
    results, deadline = [], time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            results.append(compact(table, target_file_bytes=64 << 20, min_files=3))
            if sum(r.snapshot_id is not None for r in results) >= 3 and raced():
                break
            time.sleep(0.05)
    finally:
        stop.set()
        server.join()
        assert writer.close() == 0
    results.append(compact(table, target_file_bytes=64 << 20, min_files=2))

    table.refresh()
    counts = Counter(table.scan(selected_fields=("request_id",)).to_pandas()["request_id"])
    assert len(sent) > 300
    assert set(counts) == set(sent) and max(counts.values()) == 1  # none lost, none doubled
    assert not (tmp_path / "spool").exists()
    assert all(r.rows_before == r.rows_after for r in results)
    operations = "".join("c" if is_compaction(s) else "a" for s in table.snapshots())
    assert operations.count("c") >= 4 and "ca" in operations  # appends went on after them
    assert raced(), f"no compaction commit lost a race to the writer: {results}"
    assert len(live_files(table)) == 1

    first = table.snapshots()[0].snapshot_id
    appended = table.incremental_append_scan(from_snapshot_id_exclusive=first).to_arrow()
    first_rows = table.scan(snapshot_id=first).to_arrow().num_rows
    assert appended.num_rows + first_rows == len(sent)  # an incremental reader skips compactions


def _defs():
    from mlops_assets.definitions import load

    return load()


def test_the_maintenance_job_compacts_every_model_and_checks_rows(resources):
    from mlops_assets.defs.keys import log_maintenance_key
    from mlops_assets.defs.serving.maintenance import MAINTENANCE_JOB, ROWS_CHECK
    from mlops_assets.model_config import model_configs

    churn = model_configs()["churn"]
    _fill(_table(resources), batches=30, rows=10)  # 15 files a day: over the 10 that trigger
    instance = dg.DagsterInstance.ephemeral()

    run = _defs().resolve_job_def(MAINTENANCE_JOB).execute_in_process(instance=instance)

    assert run.success
    key = log_maintenance_key(churn)
    metadata = run.asset_materializations_for_node("maintenance__churn__inference_log")[0].metadata
    assert (metadata["files_before"].value, metadata["files_after"].value) == (30, 2)
    assert metadata["rows_compacted"].value == 300
    assert metadata["snapshots_expired"].value == 0  # all younger than the retention
    assert "commit.manifest-merge.enabled" in metadata["properties_set"].value
    assert metadata["writers_paused"].value == 0  # no writer to lose a race to
    checks = {(c.asset_key, c.check_name): c for c in run.get_asset_check_evaluations()}
    assert checks[(key, ROWS_CHECK)].passed
    assert checks[(key, ROWS_CHECK)].metadata["rows_after"].value == 300
    # A model without an inference log yet: a skip, not a failure (and no table created).
    other = [k for k in checks if k[0] != key]
    assert other and all(checks[k].passed for k in other)
    assert not resources.lakehouse.catalog().table_exists(INFERENCE_LOG.name("fraud"))
    table = resources.lakehouse.catalog().load_table(INFERENCE_LOG.name("churn"))
    assert table.scan().to_arrow().num_rows == 300


def test_the_schedule_asks_for_one_run_per_tick_and_skips_while_one_runs():
    from mlops_assets.defs.serving.maintenance import MAINTENANCE_JOB, MAINTENANCE_SCHEDULE

    schedule = _defs().resolve_schedule_def(MAINTENANCE_SCHEDULE)
    assert schedule.cron_schedule == "*/10 * * * *" and schedule.job_name == MAINTENANCE_JOB
    tick = dt.datetime(2026, 12, 4, 13, 10, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        [request] = schedule.evaluate_tick(context).run_requests
        assert request.run_key == "2026-12-04T13:10"

        instance.create_run_for_job(
            _defs().resolve_job_def(MAINTENANCE_JOB), status=dg.DagsterRunStatus.STARTED
        )
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        data = schedule.evaluate_tick(context)
        assert not data.run_requests and "still going" in data.skip_message


@pytest.mark.parametrize("field", ["log_compact_min_files", "log_retain_snapshots"])
def test_config_refuses_nonsense(field):
    from pydantic import ValidationError

    from mlops_assets.model_config import ServingConfig

    with pytest.raises(ValidationError):
        ServingConfig(**{field: 0})
