"""Per model config: upkeep of its inference log (`predictions.<model>_online`), which the model
server appends to about once a second. An asset compacts each day's small files into one and
expires old snapshots (and the files only they referenced), with a check that the rewritten rows
are exactly the rows read; one job runs every model's upkeep, every 10 minutes, while the servers write."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlops_assets.defs.keys import log_maintenance_key
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.model_config import ModelConfig, ServingConfig, model_configs
from mlops_assets.resources import LakehouseCatalogResource

ROWS_CHECK = "compaction_keeps_rows"
MAINTENANCE_JOB = "inference_log_maintenance_job"
MAINTENANCE_SCHEDULE = "inference_log_maintenance_schedule"
# Every 10 minutes: a writer committing every second adds 600 snapshots and files in that time,
# and each of its commits slows as they pile up (benchmarks/bench_log_maintenance.py).
MAINTENANCE_CRON = "*/10 * * * *"
# The longest the writers hold their commits for one pause (renewed while the upkeep still loses).
PAUSE_SECONDS = 60.0


def maintenance_metadata(table: str, compaction: dict, expiry: dict) -> dict:
    """What the UI shows per run: files before/after, rows and bytes moved, snapshots expired."""
    return {
        "table": table,
        "files_before": compaction["files_before"],
        "files_after": compaction["files_after"],
        "files_rewritten": compaction["files_rewritten"],
        "files_written": compaction["files_written"],
        "partitions_compacted": ", ".join(compaction["partitions"]) or "none",
        "rows_compacted": compaction["rows_after"],
        "bytes_before": compaction["bytes_before"],
        "bytes_after": compaction["bytes_after"],
        "commit_attempts": compaction["attempts"],
        "compaction_snapshot_id": str(compaction["snapshot_id"] or ""),
        "compaction_seconds": round(compaction["seconds"], 3),
        "snapshots_before": expiry["snapshots_before"],
        "snapshots_expired": expiry["snapshots_expired"],
        "snapshots_after": expiry["snapshots_after"],
        "orphan_files_removed": expiry["orphan_files_removed"],
        "orphan_bytes_removed": expiry["orphan_bytes_removed"],
    }


def _description(model: ModelConfig) -> str:
    serving = model.serving
    return (
        f"Upkeep of the inference log {INFERENCE_LOG.name(model.name)}: each day's data files "
        f"under {serving.log_compact_target_mb} MB are rewritten into one (once there are "
        f"{serving.log_compact_min_files}) in one commit, concurrent appends kept; snapshots older "
        f"than {serving.log_snapshot_retention_minutes} min expire (the newest "
        f"{serving.log_retain_snapshots} stay) with the files only they referenced."
    )


def upkeep(iceberg: Any, serving: ServingConfig) -> Iterator[dg.MaterializeResult | Any]:
    """Table properties, expiry, compaction; the materialization and the rows check."""
    from mlops_assets.lakehouse.lease import PauseForUpkeep
    from mlops_assets.lakehouse.maintenance import compact, ensure_properties, expire_snapshots

    tuned = ensure_properties(iceberg)
    # Expiry first: every commit copies the snapshot list, so a shorter one speeds ours up.
    older_than = dt.datetime.now(dt.UTC) - dt.timedelta(
        minutes=serving.log_snapshot_retention_minutes
    )
    # The servers' writers pause only if one of our commits loses a race to them, and only
    # until the upkeep's commits are in (lakehouse/lease.py).
    with PauseForUpkeep(iceberg, seconds=PAUSE_SECONDS) as pause:
        expiry = expire_snapshots(iceberg, older_than, serving.log_retain_snapshots, pause=pause)
        compaction = compact(
            iceberg,
            target_file_bytes=serving.log_compact_target_mb << 20,
            min_files=serving.log_compact_min_files,
            sort_by="requested_at",
            pause=pause,
        )
    metadata = maintenance_metadata(
        ".".join(iceberg.name()), compaction.as_dict(), expiry.as_dict()
    )
    metadata |= {"properties_set": ", ".join(tuned) or "none", "writers_paused": pause.times_held}
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=ROWS_CHECK,
        passed=compaction.rows_before == compaction.rows_after,
        metadata={
            "rows_before": compaction.rows_before,
            "rows_after": compaction.rows_after,
            "files_rewritten": compaction.files_rewritten,
        },
    )


def build_log_maintenance(model: ModelConfig) -> dg.AssetsDefinition:
    key = log_maintenance_key(model)
    table = INFERENCE_LOG.name(model.name)

    @dg.asset(
        key=key,
        group_name="maintenance",
        kinds={"iceberg"},
        description=_description(model),
        check_specs=[
            dg.AssetCheckSpec(
                ROWS_CHECK,
                asset=key,
                description="The rewritten files hold exactly as many rows as the files they "
                "replace (read from the table's manifests before and after the commit).",
            )
        ],
    )
    def log_maintenance(context: dg.AssetExecutionContext, lakehouse: LakehouseCatalogResource):
        from pyiceberg.exceptions import NoSuchTableError

        try:
            iceberg = lakehouse.catalog().load_table(table)
        except NoSuchTableError:
            context.log.info(f"{table} does not exist yet: no online prediction was logged")
            yield dg.MaterializeResult(metadata={"table": table, "skipped": "no table yet"})
            yield dg.AssetCheckResult(
                check_name=ROWS_CHECK, passed=True, metadata={"rows_before": 0, "rows_after": 0}
            )
            return
        for event in upkeep(iceberg, model.serving):
            if isinstance(event, dg.MaterializeResult):
                m = event.metadata or {}
                context.log.info(
                    f"{table}: {m['files_rewritten']} file(s) -> {m['files_written']}, "
                    f"{m['snapshots_expired']} snapshot(s) expired"
                )
            yield event

    return log_maintenance


maintenance_job = dg.define_asset_job(
    name=MAINTENANCE_JOB,
    selection=dg.AssetSelection.groups("maintenance"),
    description="Compact every model's inference log and expire its old snapshots.",
)

_ACTIVE = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


@dg.schedule(
    name=MAINTENANCE_SCHEDULE,
    job=maintenance_job,
    cron_schedule=MAINTENANCE_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 10 minutes: compact the inference logs and expire old snapshots. On by "
    "default, like the sensors: without it a log at 1 commit/s grows 3,600 files and snapshots "
    "an hour and its writer's commits slow down.",
)
def maintenance_schedule(context: dg.ScheduleEvaluationContext):
    """One run per tick (keyed by the tick's time); a tick while the last run is still going is a
    skip, not a second compaction racing the first."""
    active = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=MAINTENANCE_JOB, statuses=list(_ACTIVE)), limit=1
    )
    if active:
        return dg.SkipReason(f"run {active[0].run_id} of {MAINTENANCE_JOB} is still going")
    tick = context.scheduled_execution_time.astimezone(dt.UTC)
    return dg.RunRequest(run_key=tick.strftime("%Y-%m-%dT%H:%M"))


@dg.definitions
def maintenance() -> dg.Definitions:
    return dg.Definitions(
        assets=[build_log_maintenance(m) for m in model_configs().values()],
        jobs=[maintenance_job],
        schedules=[maintenance_schedule],
    )
