"""The online drift sensor of the code location, evaluated against a real DagsterInstance over a
real inference log (Iceberg, rows appended as the server's writer appends them) and a champion
registered in MLflow: clean requests pass the check and ask for nothing; drifted ones fail it and,
once the breach is sustained, ask for exactly one retraining with the reason; the cooldown is
shared with every launch of the retrain job."""

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.defs.keys import dataset_run_config
from mlops_assets.lakehouse.tables import INFERENCE_LOG
from mlops_assets.model_config import model_configs
from mlops_assets.serving.inference_log import append_with_retry, rows_to_arrow
from mlops_assets.testing import register_synthetic_champion, scratch_world, synthetic_training_set

CONFIG = model_configs()["churn"]
SENSOR = "churn_online_drift_sensor"
CHECK = "online_drift_within_thresholds"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A champion fit on a synthetic training set, its reference seeded in the reference cache
    (the champion's training rows and scores, as MonitorInputs.reference builds it from DVC), and
    a fresh sample of the same population to log as requests."""
    root = tmp_path_factory.mktemp("online")
    with scratch_world(root, 200) as (settings, res):
        registry = res.model_registry.registry()
        version, model = register_synthetic_champion(registry, CONFIG, root / "train", 6000)
        columns = [str(c) for c in model.feature_names_in_]
        train = pd.read_parquet(root / "train" / "train.parquet")
        reference = train[columns].assign(__score=model.predict_proba(train[columns])[:, 1])
        folder = settings.data_dir / "monitoring" / "reference"
        folder.mkdir(parents=True)
        reference.to_parquet(folder / f"churn-v{version}.parquet", index=False)
        synthetic_training_set(root / "traffic", 8000, seed=5)
        traffic = pd.concat(
            [
                pd.read_parquet(root / "traffic" / f"{s}.parquet")
                for s in ("train", "validation", "test")
            ]
        )[columns].reset_index(drop=True)
        yield res, model, version, columns, traffic


def _drifted(traffic: pd.DataFrame) -> pd.DataFrame:
    out = traffic.copy()
    for column in ("spend_30d_usd", "spend_90d_usd", "order_count_30d", "order_count_90d"):
        out[column] = out[column] * 4
    out.loc[out.index % 2 == 0, "acquisition_channel"] = "tiktok"
    return out


def _log(res, model, version, frame: pd.DataFrame, start: dt.datetime, batch: int = 200) -> None:
    """Append `frame` as logged requests, one commit per `batch` rows (the writer's flushes)."""
    table = INFERENCE_LOG.open(res.lakehouse.catalog(), "churn")
    scores = model.predict_proba(frame)[:, 1] if model else [0.5] * len(frame)
    records = frame.to_dict("records")
    for first in range(0, len(frame), batch):
        rows = []
        for i in range(first, min(first + batch, len(frame))):
            micros = int((start + dt.timedelta(milliseconds=5 * i)).timestamp() * 1e6)
            features = json.dumps({k: v for k, v in records[i].items()})
            rows.append(
                (f"r{micros}", i, features, float(scores[i]), int(scores[i] > 0.5), "low", "",
                 version, "champion", 1.0, micros, micros, "churn", f'{{"customer_id": {i}}}')
            )  # fmt: skip
        append_with_retry(table, rows_to_arrow(rows))


class Ticks:
    """The code location's sensor, ticked against one instance with its cursor carried over."""

    def __init__(self, instance: dg.DagsterInstance):
        from mlops_assets.definitions import load

        self.defs = load()
        self.sensor = self.defs.get_sensor_def(SENSOR)
        self.instance = instance
        self.cursor = None

    def tick(self):
        resources = {k: self.defs.resources[k] for k in ("lakehouse", "model_registry")}
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=resources
        )
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        for event in data.asset_events:  # what the sensor daemon does with them
            self.instance.report_runless_asset_event(event)
        checks = [e for e in data.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
        return data, checks

    def recorded(self) -> str:
        """The status of the check's latest execution as the instance stores it."""
        key = dg.AssetCheckKey(dg.AssetKey(["monitoring", "churn", "online_drift"]), CHECK)
        latest = self.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])
        return latest[key].status.value


def test_clean_then_drifted_traffic(world):
    res, model, version, _, traffic = world
    ticks = Ticks(dg.DagsterInstance.ephemeral())
    data, checks = ticks.tick()
    assert checks == [] and not data.run_requests
    assert "0 new logged requests (no_table)" in data.skip_message
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    clean, drifted = traffic.iloc[:4000], _drifted(traffic.iloc[4000:])
    _log(res, model, version, clean.iloc[:1200], start)
    data, checks = ticks.tick()
    [check] = checks
    assert check.passed and check.check_name == CHECK
    assert check.asset_key == dg.AssetKey(["monitoring", "churn", "online_drift"])
    assert check.metadata["window_rows"].value == 1200
    assert check.metadata["champion_version"].value == version
    assert check.metadata["score_psi"].value < 0.1
    assert not data.run_requests
    assert ticks.recorded() == "SUCCEEDED"
    for k in range(7):  # more clean traffic, 400 rows a tick: passing windows, nothing asked
        _log(res, model, version, clean.iloc[1200 + 400 * k : 1600 + 400 * k], start)
        data, checks = ticks.tick()
        assert [c.passed for c in checks] == [True] and not data.run_requests
    later = start + dt.timedelta(minutes=1)
    results, requests = [], []
    for k in range(10):
        _log(res, model, version, drifted.iloc[400 * k : 400 * (k + 1)], later)
        data, checks = ticks.tick()
        results += [c.passed for c in checks]
        requests += data.run_requests or []
    first_fail = results.index(False)
    assert all(not passed for passed in results[first_fail:])
    assert len(requests) == 1, results
    assert ticks.recorded() == "FAILED"
    [request] = requests
    assert request.tags["mlops/trigger"] == "online_drift"
    assert "consecutive breached windows" in request.tags["mlops/reason"]
    assert "spend_30d_usd" in json.loads(request.tags["mlops/evidence"])["drifted_features"]
    known_by = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert request.run_config == dataset_run_config(CONFIG, known_by)
    assert request.run_key.startswith("retrain-churn-online-")
    assert "already handled" in json.loads(ticks.cursor)["last_decision"]
    # Executing the check by hand evaluates the sensor's current window: failing, with the why.
    from mlops_assets.defs.monitoring.online import online_check, online_spec

    spec = online_spec(CONFIG)
    result = dg.materialize(
        [spec, online_check(CONFIG)],
        resources={k: ticks.defs.resources[k] for k in ("lakehouse", "model_registry")},
        selection=dg.AssetSelection.checks_for_assets(spec.key),
    )
    [manual] = result.get_asset_check_evaluations()
    assert not manual.passed and "features drift" in manual.description
    assert manual.metadata["window_rows"].value == CONFIG.monitoring.online.window_rows


def test_the_cooldown_is_shared_with_the_daily_sensors_launches(world):
    """A fresh cursor (no memory of its own launches) still waits while the newest retraining a
    sensor launched (here the daily one) is inside the cooldown; a later run launched by hand
    does not hide it."""
    res, model, version, _, traffic = world
    instance = dg.DagsterInstance.ephemeral()
    for run_id, trigger in (("daily1", "degradation"), ("manual", "mlops demo")):
        instance.add_run(
            dg.DagsterRun(
                job_name="retrain_churn",
                run_id=run_id,
                status=dg.DagsterRunStatus.SUCCESS,
                tags={"mlops/trigger": trigger},
            )
        )
    ticks = Ticks(instance)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # after every row logged so far
    ticks.tick()  # the backlog of the first test: a window of clean and drifted rows
    requests, checks = [], []
    for k in range(6):
        _log(res, model, version, _drifted(traffic.iloc[400 * k : 400 * (k + 1)]), start)
        data, new = ticks.tick()
        requests += data.run_requests or []
        checks += new
    assert requests == [] and not checks[-1].passed
    assert "cooldown until" in json.loads(ticks.cursor)["last_decision"]
    assert "cooldown until" in checks[-1].metadata["decision"].value


def test_without_a_champion_the_sensor_says_so(tmp_path):
    with scratch_world(tmp_path, 200) as (_, res):
        synthetic_training_set(tmp_path / "traffic", 1500)
        traffic = pd.read_parquet(tmp_path / "traffic" / "train.parquet")
        traffic = traffic.select_dtypes(exclude="datetime").drop(columns="churned")
        _log(res, None, "1", traffic.head(1000), dt.datetime.now(dt.UTC))
        ticks = Ticks(dg.DagsterInstance.ephemeral())
        data, checks = ticks.tick()
        assert checks == [] and not data.run_requests
        assert (
            data.skip_message
            == "online drift not evaluated: model churn has no champion to monitor"
        )
        assert json.loads(ticks.cursor)["stream"]["snapshot_id"] is not None  # rows were read
