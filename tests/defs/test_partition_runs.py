"""Single-day runs the way the daemon launches them: each schedule's run request, built with its
real schedule context, executed on an instance, day after day; and re-landing one day of a world
with drift keeps the bytes and dbt's tests green."""

from __future__ import annotations

import datetime as dt
import hashlib

import dagster as dg
import pytest

from mlops_assets.datagen.landing import partition_files
from mlops_assets.datagen.tables import LANDING_TABLES
from mlops_assets.testing import free_port, scratch_settings, small_world

pytestmark = pytest.mark.slow
START = dt.date(2025, 1, 1)
HISTORY = 84  # days landed as one range run before the daily schedules start ticking
DRIFT = START + dt.timedelta(days=60)
WORLD = small_world(2000, days=100, covariate_drift_from=DRIFT, concept_drift_from=DRIFT)
DAILY = ("daily_lakehouse_schedule", "daily_scoring_schedule", "daily_monitoring_schedule")


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def _tick(defs, instance, schedule_name: str, when: dt.datetime) -> dg.RunRequest:
    """The schedule's evaluation at `when`, as the daemon's tick would see it."""
    schedule = defs.get_schedule_def(schedule_name)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    result = schedule.evaluate_tick(context)
    assert not result.skip_message, result.skip_message
    (request,) = result.run_requests
    return request


def _execute(
    defs, instance, schedule_name: str, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(defs.get_schedule_def(schedule_name).job_name)
    result = job.execute_in_process(
        instance=instance,
        run_config=request.run_config,
        tags=request.tags,
        raise_on_error=False,
    )
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert result.success, failures
    return result


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """A small drifting world: history landed and built as one range run, then the weekly
    retraining schedule's tick trains and deploys the first model."""
    from mlops_assets.definitions import load
    from mlops_assets.model_config import CONFIG_DIR, CONFIG_DIR_ENV, model_configs

    root = tmp_path_factory.mktemp("scheduled")
    # Churn alone: this world is too small for fraud's labels (60-day chargebacks of two
    # months' orders), and the schedules' mechanics are the subject here, not several models.
    configs = root / "model_configs"
    configs.mkdir()
    (configs / "churn.yaml").write_text((CONFIG_DIR / "churn.yaml").read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_SERVING_PORT", str(free_port()))
        mp.setenv(CONFIG_DIR_ENV, str(configs))
        model_configs.cache_clear()
        with scratch_settings(root / "data", WORLD) as settings:
            defs = load()  # this data folder's code location (its resources name the folder)
            instance = dg.DagsterInstance.ephemeral()
            last = START + dt.timedelta(days=HISTORY - 1)
            history = defs.resolve_job_def("daily_lakehouse_job").execute_in_process(
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": START.isoformat(),
                    "dagster/asset_partition_range_end": last.isoformat(),
                },
            )
            assert history.success
            try:
                yield settings, defs, instance
            finally:
                defs.resources["deployer"].stop("churn")
    model_configs.cache_clear()


def test_the_weekly_retraining_schedule_tick_trains_and_deploys(scheduled):
    _, defs, instance = scheduled
    from mlops_assets.training.registry import CHAMPION, alias_version, client

    first = START + dt.timedelta(days=HISTORY)
    sunday = first + dt.timedelta(days=(6 - first.weekday()) % 7)  # cron: Sundays 02:00 UTC
    request = _tick(defs, instance, "retrain_churn_schedule", _at(sunday, 2))
    _execute(defs, instance, "retrain_churn_schedule", request)
    registry = defs.resources["model_registry"].registry()
    assert alias_version(client(registry), "churn", CHAMPION) is not None


def test_daily_schedules_succeed_one_partition_at_a_time_day_after_day(scheduled):
    settings, defs, instance = scheduled
    from mlops_assets.monitoring.results import read_table

    for offset in range(3):
        day = START + dt.timedelta(days=HISTORY + offset)
        for name, hour in zip(DAILY, (1, 3, 4), strict=True):
            request = _tick(defs, instance, name, _at(day + dt.timedelta(days=1), hour))
            assert request.partition_key == day.isoformat()
            assert request.tags["dagster/partition"] == day.isoformat()
            _execute(defs, instance, name, request)
        for table in LANDING_TABLES:
            assert partition_files(settings.landing, table, day), (table, day)
    catalog = defs.resources["lakehouse"].catalog()
    monitored = read_table(catalog, defs_config()).query("metric == 'status'")
    days = {START + dt.timedelta(days=HISTORY + i) for i in range(3)}
    assert days <= set(monitored["day"])
    assert set(monitored["monitor"]) == {
        "performance",
        "feature_drift",
        "prediction_drift",
        "data_quality",
        "fairness",
    }


def test_a_tick_after_the_worlds_last_day_skips_instead_of_failing(scheduled):
    _, defs, instance = scheduled
    schedule = defs.get_schedule_def("daily_lakehouse_schedule")
    from mlops_assets.defs.partitions import daily_partitions

    # The partitions the loaded code location knows (built from the world when it was imported).
    last = dt.date.fromisoformat(daily_partitions.get_last_partition_key())
    after = last + dt.timedelta(days=30)
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=_at(after, 1),
        repository_def=defs.get_repository_def(),
    )
    result = schedule.evaluate_tick(context)
    assert not result.run_requests
    assert "is not a partition" in result.skip_message


def test_relanding_one_day_of_a_drifting_world_keeps_bytes_and_dbt_green(scheduled):
    """The UI's "any partition can be regenerated alone": one partition of the lakehouse job
    re-lands a drifted day with the same bytes, and dbt's tests (asset checks) stay green."""
    settings, defs, instance = scheduled
    day = DRIFT + dt.timedelta(days=5)

    def digests() -> dict[str, str]:
        return {
            t: hashlib.sha256(open(p, "rb").read()).hexdigest()
            for t in LANDING_TABLES
            for p in partition_files(settings.landing, t, day)
        }

    before = digests()
    job = defs.resolve_job_def("daily_lakehouse_job")
    result = job.execute_in_process(
        instance=instance, partition_key=day.isoformat(), raise_on_error=False
    )
    assert result.success
    assert digests() == before
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert len(checks) > 40  # landing checks and every dbt test
    failed = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed]
    assert not failed, failed


def defs_config():
    from mlops_assets.model_config import model_configs

    return model_configs()["churn"]
