"""Monitoring end to end on a generated shop: the monitoring job's real checks on real Iceberg tables,
then the retraining sensor evaluated on what they wrote. Drift is injected into the gold feature
table from one day on (spend and orders x4, half the customers on a new channel)."""

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
from mlops_assets.model_config import model_configs
from mlops_assets.monitoring.results import read_table
from mlops_assets.serving.batch import score_days
from mlops_assets.testing import (
    build_shop,
    register_quick_model,
    scratch_world,
)
from mlops_assets.training.decisions import set_alias
from mlops_assets.training.registry import CHAMPION, load_model

pytestmark = pytest.mark.slow
CONFIG = model_configs()["churn"]
DAYS = 120
CLEAN = [dt.date(2025, 4, 10) + dt.timedelta(days=i) for i in range(5)]  # 04-10 .. 04-14
DRIFT_FROM = dt.date(2025, 4, 20)
DRIFTED = [DRIFT_FROM + dt.timedelta(days=i) for i in range(5)]  # 04-20 .. 04-24


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    with scratch_world(root, 3000) as (settings, res):
        store = build_shop(settings, days=DAYS)
        dataset = root / "dataset"
        known_by = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)
        labels = Labels.of(CONFIG)
        build_training_set(store, labels, load_labels(res.warehouse, labels, known_by), dataset)
        registry = res.model_registry.registry()
        version = register_quick_model(registry, CONFIG, dataset)
        set_alias(registry, "churn", CHAMPION, version, actor="test", reason="fixture")
        # The drift reference: in production the champion's recent training rows, pulled from DVC
        # by the version's dvc_md5 tag (the demo exercises that path). A 3,000-customer shop that is
        # three months old grows too fast for that to be a stable "no drift" baseline, so the test
        # seeds the reference cache with the scored population of a day before the clean window:
        # the checks then see day-to-day noise on clean days and the injected shift on drifted ones.
        from mlops_assets.features.offline import offline_features

        model = load_model(registry, "churn", version)
        columns = [str(c) for c in model.feature_names_in_]
        as_of = dt.datetime.combine(CLEAN[0] - dt.timedelta(days=3), dt.time(), tzinfo=dt.UTC)
        base = offline_features(store, "churn_v1", as_of)
        reference = base[columns].assign(__score=model.predict_proba(base[columns])[:, 1])
        folder = settings.data_dir / "monitoring" / "reference"
        folder.mkdir(parents=True)
        reference.to_parquet(folder / f"churn-v{version}.parquet", index=False)
        # Inject covariate drift into the gold features from DRIFT_FROM on.
        path = settings.gold_dir / "customer_features.parquet"
        gold = pd.read_parquet(path)
        late = gold["event_timestamp"] >= pd.Timestamp(DRIFT_FROM - dt.timedelta(days=7))
        for column in ("spend_30d_usd", "spend_90d_usd", "order_count_30d", "order_count_90d"):
            gold.loc[late, column] = gold.loc[late, column] * 4
        gold.loc[late & (gold["customer_id"] % 2 == 0), "acquisition_channel"] = "tiktok"
        gold.to_parquet(path, index=False)
        first = CLEAN[0] - dt.timedelta(days=7)  # data quality compares with the trailing week
        days = [first + dt.timedelta(days=i) for i in range((DRIFTED[-1] - first).days + 1)]
        score_days(res.lakehouse.catalog(), store, registry, CONFIG, days)
        yield res


def _monitor(first: dt.date, last: dt.date) -> dg.ExecuteInProcessResult:
    from mlops_assets.definitions import load

    job = load().resolve_job_def("daily_monitoring_job")
    # Churn's monitors (the only model with a champion in this world), as `mlops demo` selects
    # one model's part of the job.
    keys = [k for k in job.asset_layer.selected_asset_keys if k.path[1] == CONFIG.name]
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=keys,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )


def _evaluate(times: int, cursor: str | None = None) -> tuple[list, list, str | None]:
    from mlops_assets.definitions import load

    defs = load()
    sensor = defs.get_sensor_def("retrain_churn_on_degradation")
    instance = dg.DagsterInstance.ephemeral()
    requests, skips = [], []
    for _ in range(times):
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"lakehouse": defs.resources["lakehouse"]}
        )
        data = sensor.evaluate_tick(context)
        requests += data.run_requests or []
        skips.append(data.skip_message)
        cursor = data.cursor
    return requests, skips, cursor


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_no_drift_passes_every_check_and_the_sensor_waits(monitored):
    result = _monitor(CLEAN[0], CLEAN[-1])
    assert result.success
    checks = _checks(result)
    assert checks["feature_drift_within_thresholds"]
    assert checks["prediction_drift_within_thresholds"]
    assert checks["data_quality_within_thresholds"]
    # No actuals exist for the days performance would evaluate: reported, not a failure.
    assert checks["performance_within_thresholds"]
    table = read_table(monitored.lakehouse.catalog(), CONFIG)
    perf = table[(table["monitor"] == "performance") & (table["metric"] == "status")]
    assert set(perf["detail"]) <= {"pending", "no_data"}
    requests, skips, _ = _evaluate(5)
    assert requests == []
    assert all("no degradation" in s for s in skips)


def test_injected_drift_fails_the_checks_and_asks_for_exactly_one_retraining(monitored):
    result = _monitor(DRIFTED[0], DRIFTED[-1])
    assert result.success  # a failed check is not a failed run
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    drift = evaluations["feature_drift_within_thresholds"]
    assert not drift.passed
    assert drift.severity == dg.AssetCheckSeverity.ERROR
    assert "2025-04-20" in drift.metadata["breached_days"].value
    table = read_table(monitored.lakehouse.catalog(), CONFIG)
    drifted = table[
        (table["monitor"] == "feature_drift") & (table["metric"] == "psi") & table["breached"]
    ]
    assert {"spend_30d_usd", "acquisition_channel"} <= set(drifted["feature"])

    requests, skips, cursor = _evaluate(50)
    assert len(requests) == 1, skips[:3]
    [request] = requests
    assert request.run_key == f"retrain-churn-{DRIFTED[0]}"
    assert request.tags["mlops/trigger"] == "degradation"
    assert "feature_drift" in request.tags["mlops/reason"]
    assert "spend_30d_usd" in json.loads(request.tags["mlops/evidence"])["drifted_features"]
    assert request.run_config["ops"]["datasets__churn_v1"]["config"]["labels_known_by"] == str(
        DRIFTED[2] + dt.timedelta(days=1)
    )
    assert all("already handled" in s for s in skips[1:])
    # A new sensor cursor (e.g. a fresh instance) still has the cooldown and run key to stop it;
    # with the cursor carried over, nothing more is asked for.
    more, _, _ = _evaluate(3, cursor)
    assert more == []
