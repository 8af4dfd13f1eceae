"""The fairness monitor: its per-group numbers against an independent pandas/scikit-learn computation
on a real shop's predictions and actuals, known gaps on synthetic frames (a gap breaches, no gap
does not, small groups are left out), and its Dagster asset, built from the registry entry alone,
materialized for one partition with a passing and a failing check."""

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from mlops_assets.defs.keys import actuals_key, monitor_key, predictions_key
from mlops_assets.model_config import (
    CONFIG_DIR,
    CONFIG_DIR_ENV,
    FairnessConfig,
    ModelConfig,
    model_configs,
)
from mlops_assets.monitoring.fairness import METRICS, fairness, judge, segment_frame
from mlops_assets.monitoring.results import MonitoringError, MonitorResult

CHURN = model_configs()["churn"]
DAY = dt.date(2025, 5, 20)


def _synthetic(groups: dict[str, tuple[int, float, float]], seed: int = 0) -> pd.DataFrame:
    """`groups[name] = (rows, label rate, share of positives predicted)`; negatives are predicted
    positive at 5 %, scores follow the predictions with noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, (n, rate, hit) in groups.items():
        y = (rng.random(n) < rate).astype(int)
        predicted = np.where(y == 1, rng.random(n) < hit, rng.random(n) < 0.05).astype(int)
        score = np.clip(0.6 * predicted + 0.4 * rng.random(n), 0, 1)
        frames.append(
            pd.DataFrame({"plan": name, "y_true": y, "y_pred": predicted, "y_score": score})
        )
    return pd.concat(frames, ignore_index=True)


def _limits(**changes) -> FairnessConfig:
    values = {
        "segments": ["plan"],
        "min_group_size": 100,
        "min_class_rows": 10,
        "max_difference": {"recall": 0.2, "selection_rate": 0.3},
        **changes,
    }
    return FairnessConfig.model_validate(values)


def _judged(frame: pd.DataFrame, limits: FairnessConfig) -> tuple[MonitorResult, pd.DataFrame]:
    result = MonitorResult("fairness", DAY, "ok", {})
    judge(frame, limits, result)
    return result, pd.DataFrame(result.rows)


def _value(rows: pd.DataFrame, metric: str, feature: str | None) -> float | None:
    match = rows[(rows["metric"] == metric) & (rows["feature"] == feature)]
    assert len(match) == 1, (metric, feature)
    value = match["value"].iloc[0]
    return None if pd.isna(value) else float(value)


def test_a_known_recall_gap_breaches():
    # Same label rate, the model finds 90 % of basic's positives and 40 % of premium's.
    frame = _synthetic({"basic": (2000, 0.3, 0.9), "premium": (2000, 0.3, 0.4)})
    result, rows = _judged(frame, _limits())
    assert result.status == "breached"
    recall_gap = rows[(rows["metric"] == "recall_difference") & (rows["feature"] == "plan")]
    assert recall_gap["breached"].item() and 0.4 < recall_gap["value"].item() < 0.6
    assert recall_gap["threshold"].item() == 0.2
    assert "basic" in recall_gap["detail"].item() and "premium" in recall_gap["detail"].item()
    assert result.summary["breaches"][0].startswith("recall difference by plan")
    headline = rows[rows["metric"] == "max_gap_to_limit"]
    assert headline["breached"].item() and headline["value"].item() > 2
    assert headline["feature"].isna().item() and headline["threshold"].item() == 1.0


def test_groups_alike_do_not_breach():
    frame = _synthetic({"basic": (2000, 0.3, 0.8), "premium": (2000, 0.3, 0.8)}, seed=1)
    result, rows = _judged(frame, _limits())
    assert result.status == "ok" and "breaches" not in result.summary
    assert not rows["breached"].any()
    assert 0 < result.summary["max_gap_to_limit"] < 1


def test_a_ratio_under_its_floor_breaches():
    # Selection rates 0.3 vs 0.18: a difference of 0.12 (within 0.3), a ratio of 0.6 (< 0.8).
    frame = _synthetic({"basic": (4000, 0.3, 0.9), "premium": (4000, 0.15, 0.9)}, seed=2)
    result, rows = _judged(frame, _limits(min_ratio={"selection_rate": 0.8}))
    ratio = rows[(rows["metric"] == "selection_rate_ratio") & (rows["feature"] == "plan")]
    assert ratio["breached"].item() and ratio["value"].item() < 0.8
    difference = rows[(rows["metric"] == "selection_rate_difference")]
    assert not difference["breached"].item()
    assert result.status == "breached"


def test_small_groups_are_counted_but_left_out_of_the_gaps():
    # 'trial' has 50 rows and a recall of 0: it would breach if it counted.
    frame = _synthetic(
        {"basic": (2000, 0.3, 0.8), "premium": (2000, 0.3, 0.8), "trial": (50, 0.5, 0)}
    )
    frame.loc[frame.index[:30], "plan"] = None  # no value: its own group, "(missing)", also small
    result, rows = _judged(frame, _limits())
    assert result.status == "ok"
    trial = rows[rows["feature"] == "plan=trial"]
    assert trial["metric"].tolist() == ["count"] and trial["value"].item() == 50
    assert "ignored: fewer than 100 rows" in trial["detail"].item()
    assert rows[rows["feature"] == "plan=(missing)"]["value"].item() == 30
    assert result.summary["ignored_groups"] == 2
    assert "trial" not in " ".join(rows["detail"])  # in no gap


def test_a_rate_with_too_few_rows_in_its_denominator_is_undefined():
    # 'premium' has 150 rows and about 3 positives: no recall, no ROC AUC, so no recall gap.
    frame = _synthetic({"basic": (2000, 0.3, 0.9), "premium": (150, 0.02, 0.0)}, seed=3)
    _, rows = _judged(frame, _limits())
    assert _value(rows, "recall", "plan=premium") is None
    assert _value(rows, "roc_auc", "plan=premium") is None
    assert _value(rows, "recall", "plan=basic") > 0.8
    assert _value(rows, "recall_difference", "plan") is None
    assert _value(rows, "false_positive_rate", "plan=premium") is not None


def test_fairness_limits_name_known_metrics():
    with pytest.raises(ValidationError, match="selection_rate"):
        FairnessConfig.model_validate({"max_difference": {"accuracy": 0.1}})
    with pytest.raises(ValidationError):
        FairnessConfig.model_validate({"min_ratio": {"recall": 1.5}})


def test_a_segment_the_model_does_not_serve_is_a_clear_error():
    config = _with_fairness(CHURN, {"segments": ["plan", "zodiac_sign"]})
    labelled = pd.DataFrame({"customer_id": [1], "score": [0.7], "prediction": [1], "actual": [1]})
    features = pd.DataFrame({"customer_id": [1], "plan": ["basic"], "tenure_days": [3]})
    with pytest.raises(MonitoringError, match=r"\['zodiac_sign'\] are not features of churn_v1"):
        segment_frame(config, labelled, features)


def _with_fairness(config: ModelConfig, fairness_values: dict) -> ModelConfig:
    data = config.model_dump()
    data["monitoring"]["fairness"] = {**data["monitoring"]["fairness"], **fairness_values}
    return ModelConfig.model_validate(data)


# A real shop: churn's champion scores a week whose actuals are due on MONITORED; fraud's scores
# a week of orders whose chargeback window has passed by the shop's last day.
SCORED = [dt.date(2025, 4, 4) + dt.timedelta(days=i) for i in range(7)]
MONITORED = SCORED[-1] + dt.timedelta(days=CHURN.label_window_days + 1)
FRAUD = model_configs()["fraud"]
FRAUD_SCORED = [dt.date(2025, 3, 14) + dt.timedelta(days=i) for i in range(7)]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from mlops_assets.datasets.training_set import Labels, build_training_set, load_labels
    from mlops_assets.serving.batch import fill_actuals, score_days
    from mlops_assets.testing import build_shop, register_quick_champion, scratch_world

    root = tmp_path_factory.mktemp("fairness")
    with scratch_world(root, 3000) as (settings, res):
        store = build_shop(settings, days=150)
        registry = res.model_registry.registry()
        catalog = res.lakehouse.catalog()
        for config, scored in ((CHURN, SCORED), (FRAUD, FRAUD_SCORED)):
            labels = Labels.of(config)
            dataset = root / f"dataset-{config.name}"
            build_training_set(store, labels, load_labels(res.warehouse, labels), dataset)
            register_quick_champion(registry, config, dataset)
            score_days(catalog, store, registry, config, scored)
            filled = fill_actuals(catalog, res.warehouse, config)
            assert set(filled["filled_days"]) == {str(d) for d in scored}
        yield {"settings": settings, "resources": res, "store": store, "root": root}


@pytest.mark.slow
def test_per_group_numbers_equal_an_independent_computation(shop):
    from mlops_assets.features.offline import offline_features
    from mlops_assets.lakehouse.tables import PREDICTIONS
    from mlops_assets.monitoring.inputs import MonitorInputs

    res = shop["resources"]
    catalog, registry = res.lakehouse.catalog(), res.model_registry.registry()
    inputs = MonitorInputs(CHURN, catalog, registry, shop["settings"], shop["store"], [MONITORED])
    result = fairness(inputs, MONITORED)
    rows = pd.DataFrame(result.rows)
    assert result.summary["evaluated_prediction_days"] == f"{SCORED[0]}..{SCORED[-1]}"

    # Independently: every labelled prediction of the week with its segments as scored.
    predictions = catalog.load_table(PREDICTIONS.name(CHURN.name)).scan().to_pandas()
    frames = []
    for day in SCORED:
        as_of = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        segments = offline_features(shop["store"], CHURN.feature_service, as_of)
        scored = predictions[predictions["prediction_date"] == day]
        frames.append(scored.merge(segments, on="customer_id"))
    labelled = pd.concat(frames)
    assert result.summary["labelled_rows"] == len(labelled) > 3000
    limits = CHURN.monitoring.fairness
    checked = 0
    for attribute in limits.segments:
        for group, part in labelled.groupby(attribute):
            feature = f"{attribute}={group}"
            assert _value(rows, "count", feature) == len(part)
            if len(part) < limits.min_group_size:
                continue
            expected = _rates(part, limits.min_class_rows)
            for metric in METRICS:
                got = _value(rows, metric, feature)
                if expected[metric] is None:
                    assert got is None, (feature, metric)
                else:
                    assert got == pytest.approx(expected[metric], abs=1e-12), (feature, metric)
                    checked += 1
        _assert_gaps(rows, attribute, labelled, limits)
    assert checked > 50


def _rates(part: pd.DataFrame, n: int) -> dict[str, float | None]:
    y, predicted = (
        part["actual"].astype(int),
        (part["score"] >= CHURN.decision_threshold).astype(int),
    )
    positives, negatives = int(y.sum()), int((1 - y).sum())
    false_positives = int(((predicted == 1) & (y == 0)).sum())
    return {
        "selection_rate": float(predicted.mean()),
        "recall": float(recall_score(y, predicted)) if positives >= n else None,
        "false_positive_rate": false_positives / negatives if negatives >= n else None,
        "precision": float(precision_score(y, predicted)) if predicted.sum() >= n else None,
        "roc_auc": float(roc_auc_score(y, part["score"]))
        if min(positives, negatives) >= n
        else None,
    }


def _assert_gaps(rows: pd.DataFrame, attribute: str, labelled: pd.DataFrame, limits) -> None:
    """The difference (max - min) and ratio (min / max) of each limited metric over the groups
    large enough to judge, and whether it breached."""
    kept = labelled.groupby(attribute).filter(lambda g: len(g) >= limits.min_group_size)
    per_group = pd.DataFrame(
        {g: _rates(p, limits.min_class_rows) for g, p in kept.groupby(attribute)}
    ).T.astype(float)
    for metric, limit in limits.max_difference.items():
        values = per_group[metric].dropna()
        difference = _value(rows, f"{metric}_difference", attribute)
        assert difference == pytest.approx(values.max() - values.min(), abs=1e-12)
        ratio = _value(rows, f"{metric}_ratio", attribute)
        assert ratio == pytest.approx(values.min() / values.max(), abs=1e-12)
        match = rows[(rows["metric"] == f"{metric}_difference") & (rows["feature"] == attribute)]
        assert match["breached"].item() == (difference > limit)


def _configs_with(folder: Path, fairness_values: dict) -> Path:
    """A model configs folder holding churn alone, its fairness limits changed."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((CONFIG_DIR / "churn.yaml").read_text())
    data["monitoring"]["fairness"].update(fairness_values)
    (folder / "churn.yaml").write_text(yaml.safe_dump(data))
    return folder


def _materialize(configs: Path, monkeypatch) -> dg.ExecuteInProcessResult:
    """The code location's fairness asset of churn, for the MONITORED partition."""
    import mlops_assets.definitions as definitions

    monkeypatch.setenv(CONFIG_DIR_ENV, str(configs))
    model_configs.cache_clear()
    definitions.load.cache_clear()
    try:
        defs = definitions.load()
        job = defs.resolve_job_def("daily_monitoring_job")
        return job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            asset_selection=[monitor_key(CHURN, "fairness")],
            partition_key=MONITORED.isoformat(),
            raise_on_error=False,
        )
    finally:
        monkeypatch.delenv(CONFIG_DIR_ENV)
        model_configs.cache_clear()
        definitions.load.cache_clear()


@pytest.mark.slow
def test_the_dagster_asset_passes_and_fails_its_check_with_metadata(shop, monkeypatch):
    from mlops_assets.monitoring.results import read_table

    # Limits this quick champion's gaps stay within (they reach about 0.4 of recall by country).
    loose = {"max_difference": {"selection_rate": 0.9, "recall": 0.9, "false_positive_rate": 0.9}}
    passing = _materialize(_configs_with(shop["root"] / "configs_loose", loose), monkeypatch)
    assert passing.success
    [check] = passing.get_asset_check_evaluations()
    assert check.check_name == "fairness_within_thresholds" and check.passed
    assert check.metadata["status_last_day"].value == "ok"
    assert 0 < check.metadata["max_gap_to_limit"].value < 1
    [event] = passing.get_asset_materialization_events()
    assert event.asset_key == monitor_key(CHURN, "fairness")
    metadata = event.materialization.metadata
    assert metadata["fairness_per_group"].value.startswith("![fairness per group")
    assert "data:image/png;base64," in metadata["fairness_per_group"].value
    assert metadata["plot_file"].value.endswith("fairness.png")

    # The same week judged with a 1-point limit on the selection-rate gap: the check fails.
    tight = {"max_difference": {"selection_rate": 0.01}}
    failing = _materialize(_configs_with(shop["root"] / "configs_tight", tight), monkeypatch)
    assert failing.success  # a failed check is not a failed run
    [check] = failing.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["breached_days"].value == str(MONITORED)
    assert "selection_rate difference by" in check.metadata["breaches"].value
    assert check.metadata["max_gap_to_limit"].value > 1
    table = read_table(shop["resources"].lakehouse.catalog(), CHURN)
    day = table[(table["monitor"] == "fairness") & (table["day"] == MONITORED)]
    status = day[day["metric"] == "status"]
    assert status["breached"].item() and status["detail"].item() == "breached"
    breached = day[day["breached"] & (day["metric"] == "selection_rate_difference")]
    assert set(breached["feature"]) == set(CHURN.monitoring.fairness.segments)
    assert {"plan=basic", "plan=free", "plan=premium"} <= set(day["feature"].dropna())


@pytest.mark.slow
def test_a_segment_that_is_not_a_feature_fails_the_run_with_a_clear_message(shop, monkeypatch):
    wrong = {"segments": ["plan", "zodiac_sign"]}
    result = _materialize(_configs_with(shop["root"] / "configs_wrong", wrong), monkeypatch)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error.cls_name == "Failure"
    assert f"fairness on {MONITORED}: fairness segments ['zodiac_sign'] are not features" in (
        error.message
    )
    assert "plan" in error.message and "Traceback" not in error.message


def test_the_monitor_is_one_registry_entry_and_no_wiring():
    from mlops_assets.definitions import load
    from mlops_assets.monitoring.registry import MONITORS, RETRAIN_ON

    entry = MONITORS["fairness"]
    assert entry.check == "fairness_within_thresholds" and entry.reads_actuals
    assert "fairness" not in RETRAIN_ON  # a retraining on the same data keeps the gap
    graph = load().get_repository_def().asset_graph
    for config in model_configs().values():
        key = monitor_key(config, "fairness")
        assert set(graph.get(key).parent_keys) == {predictions_key(config), actuals_key(config)}
        assert dg.AssetCheckKey(key, "fairness_within_thresholds") in graph.asset_check_keys
    # Nothing under the Dagster wiring names the monitor: the registry entry is all it took.
    defs_dir = Path(__file__).parents[2] / "mlops_assets" / "defs"
    assert not [p for p in defs_dir.rglob("*.py") if "fairness" in p.read_text()]


@pytest.mark.slow
def test_order_predictions_take_the_segments_of_their_customer(shop):
    """Fraud scores orders: the segments (country, plan) come from the ordering customer's views
    as of the order, joined on both keys; every labelled order lands in exactly one group."""
    from mlops_assets.lakehouse.tables import PREDICTIONS
    from mlops_assets.monitoring.inputs import MonitorInputs

    res = shop["resources"]
    catalog, registry = res.lakehouse.catalog(), res.model_registry.registry()
    day = FRAUD_SCORED[-1] + dt.timedelta(days=FRAUD.label_window_days + 1)
    inputs = MonitorInputs(FRAUD, catalog, registry, shop["settings"], shop["store"], [day])
    result = fairness(inputs, day)
    rows = pd.DataFrame(result.rows)
    predictions = catalog.load_table(PREDICTIONS.name(FRAUD.name)).scan().to_pandas()
    labelled = predictions[predictions["prediction_date"].isin(FRAUD_SCORED)]
    assert result.summary["labelled_rows"] == len(labelled) > 300
    for attribute in FRAUD.monitoring.fairness.segments:
        counts = rows[(rows["metric"] == "count") & rows["feature"].str.startswith(f"{attribute}=")]
        assert counts["value"].sum() == len(labelled), attribute
        assert counts["feature"].is_unique
    # Independently: a customer's country never changes, so each order's group is its customer's
    # country, unless the customer had no profile row yet when the order was scored ("(missing)").
    countries = res.warehouse.query(
        "select distinct customer_id, country_code from gold.customer_features"
    )
    assert countries["customer_id"].is_unique
    expected = labelled.merge(countries, on="customer_id", how="left")["country_code"]
    unknown = int(expected.isna().sum())  # no profile row at all: missing too
    counts = rows[(rows["metric"] == "count") & rows["feature"].str.startswith("country_code=")]
    got = counts.set_index(counts["feature"].str.removeprefix("country_code="))["value"]
    missing = got.pop("(missing)") if "(missing)" in got.index else 0
    assert set(got.index) <= set(expected.dropna())
    shortfall = expected.value_counts() - got.reindex(expected.value_counts().index, fill_value=0)
    assert (shortfall >= 0).all() and shortfall.sum() + unknown == missing
    assert got.sum() > len(labelled) / 2  # most orders have their customer's country
