"""Hermetic KFP v2 components: every import is inside the function, inputs and outputs are typed
artifacts or plain parameters. They run in the project's image (`MLOPS_IMAGE`) on a cluster
and in the current environment under `kfp.local`."""

import functools
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from mlops_assets.settings import get_settings

BASE_IMAGE = get_settings().image  # MLOPS_IMAGE: the same image the predictor runs
# The image (and the local environment) has the project and kfp installed: no pip install per step.
component = functools.partial(dsl.component, base_image=BASE_IMAGE, install_kfp_package=False)
# Between the steps of one run, models travel as `model.joblib` in the run's own pipeline root
# (the same run wrote them a moment ago). What enters the registry is skops, and every load from the
# registry checks its types (mlops_assets/training/registry.py): nothing pickled is read back from it.


@component
def fetch_dataset(dvc_md5: str, dataset: Output[Dataset]):
    """The exact training set a DVC hash names, from the DVC remote (verified on pull)."""
    from pathlib import Path

    from mlops_assets.datasets.versioning import pull
    from mlops_assets.settings import get_settings

    pull(get_settings(), dvc_md5, Path(dataset.path))
    dataset.metadata["dvc_md5"] = dvc_md5


@component
def train_model(
    dataset: Input[Dataset],
    config_json: str,
    model: Output[Model],
    baseline: Output[Model],
    metrics: Output[Metrics],
):
    """Tune the configured model on train -> validation, refit the winner (and a logistic
    baseline) on train + validation. Validation metrics come from the fits that never saw it;
    so does an `auto` decision threshold, stored on each refit estimator."""
    import json
    from pathlib import Path

    import joblib

    from mlops_assets.model_config import ModelConfig
    from mlops_assets.training.estimators import (
        check_labels,
        dataset_schema,
        evaluate,
        read_split,
        refit_on_train_and_validation,
        tune_with_baseline,
    )
    from mlops_assets.training.thresholds import THRESHOLD_ATTRIBUTE, choose_threshold

    config = ModelConfig.model_validate_json(config_json)
    folder = Path(dataset.path)
    features = dataset_schema(folder)["features"]
    train, validation = read_split(folder, "train"), read_split(folder, "validation")
    check_labels(train[config.label], "train")
    check_labels(validation[config.label], "validation")
    # The baseline's fits run on the tuning workers beside the candidates.
    search = tune_with_baseline(config, train, validation, features)
    tuned, trials, base = search.tuned, search.trials, search.baseline
    metrics.log_metric("tuning_candidates", len(trials))
    metrics.log_metric("model_validation_roc_auc", max(t["validation_roc_auc"] for t in trials))
    y_val = validation[config.label].to_numpy()
    threshold = {
        "model": choose_threshold(config, y_val, search.validation_scores),
        "baseline": choose_threshold(config, y_val, base.validation_scores),
    }
    metrics.log_metric("model_validation_decision_threshold", threshold["model"])
    baseline_metrics = evaluate(
        y_val, base.validation_scores, threshold["baseline"], config.thresholds
    )
    for name, value in baseline_metrics.items():
        metrics.log_metric(f"baseline_validation_{name}", value)

    refits = refit_on_train_and_validation(search, train, validation, features)
    for kind, artifact in (("model", model), ("baseline", baseline)):
        # The threshold travels with the estimator (into MLflow): serving and batch cut there.
        setattr(refits[kind], THRESHOLD_ATTRIBUTE, threshold[kind])
        Path(artifact.path).mkdir(parents=True, exist_ok=True)
        joblib.dump(refits[kind], Path(artifact.path) / "model.joblib")
    model.metadata["decision_threshold"] = threshold["model"]
    model.metadata["algorithm"] = config.algorithm
    model.metadata["params_json"] = tuned.params.model_dump_json()
    model.metadata["tuning_trials_json"] = json.dumps(trials)


@component
def evaluate_model(
    dataset: Input[Dataset],
    model: Input[Model],
    baseline: Input[Model],
    config_json: str,
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
) -> NamedTuple("Evaluation", [("metrics_json", str), ("roc_auc", float)]):
    """Test-split (time-based holdout) metrics of the model and the baseline."""
    import json
    from collections import namedtuple
    from pathlib import Path

    import joblib
    from sklearn.metrics import confusion_matrix, roc_curve

    from mlops_assets.model_config import ModelConfig
    from mlops_assets.training.estimators import (
        check_labels,
        dataset_schema,
        evaluate,
        feature_frame,
        read_split,
    )
    from mlops_assets.training.thresholds import decision_threshold

    config = ModelConfig.model_validate_json(config_json)
    folder = Path(dataset.path)
    features = dataset_schema(folder)["features"]
    test = read_split(folder, "test")
    check_labels(test[config.label], "test")
    y = test[config.label].to_numpy()
    X = feature_frame(test, features)
    results = {}
    for kind, artifact in (("model", model), ("baseline", baseline)):
        estimator = joblib.load(Path(artifact.path) / "model.joblib")
        scores = estimator.predict_proba(X)[:, 1]
        threshold = decision_threshold(config, estimator)
        results[kind] = evaluate(y, scores, threshold, config.thresholds)
        for name, value in results[kind].items():
            metrics.log_metric(f"{kind}_test_{name}", value)
        if kind == "model":
            fpr, tpr, thresholds = roc_curve(y, scores)
            step = max(1, len(fpr) // 200)
            curves.log_roc_curve(
                fpr[::step].tolist(),
                tpr[::step].tolist(),
                [min(float(t), 1.0) for t in thresholds[::step]],
            )
            predicted = (scores >= threshold).astype(int)
            curves.log_confusion_matrix(
                [f"not {config.label}", config.label], confusion_matrix(y, predicted).tolist()
            )
    out = namedtuple("Evaluation", ["metrics_json", "roc_auc"])
    return out(json.dumps(results, sort_keys=True), results["model"]["roc_auc"])


@component
def register_model(
    dataset: Input[Dataset],
    model: Input[Model],
    config_json: str,
    metrics_json: str,
    lineage_json: str,
    kfp_run_id: str,
) -> NamedTuple("Registration", [("mlflow_run_id", str), ("model_version", str)]):
    """Log the run (params, metrics, model with signature and input example, lineage tags) to
    MLflow and register a new model version. Aliases are the promotion gate's job."""
    import json
    from collections import namedtuple
    from pathlib import Path

    import joblib

    from mlops_assets.model_config import ModelConfig
    from mlops_assets.training.estimators import dataset_schema, feature_frame, read_split
    from mlops_assets.training.registry import Registry, log_and_register

    config = ModelConfig.model_validate_json(config_json)
    # The hyperparameters the tuning step chose, so the registry records what was trained.
    if "params_json" in model.metadata:
        config = config.model_copy(
            update={
                "params": type(config.params).model_validate_json(model.metadata["params_json"])
            }
        )
    folder = Path(dataset.path)
    example = feature_frame(read_split(folder, "test").head(5), dataset_schema(folder)["features"])
    lineage = {**json.loads(lineage_json), "kfp_run_id": kfp_run_id}
    run_id, version = log_and_register(
        registry=Registry.from_environment(),
        estimator=joblib.load(Path(model.path) / "model.joblib"),
        input_example=example,
        config=config,
        metrics=json.loads(metrics_json),
        lineage=lineage,
        documents={"tuning.json": json.loads(model.metadata.get("tuning_trials_json", "[]"))},
    )
    out = namedtuple("Registration", ["mlflow_run_id", "model_version"])
    return out(run_id, version)
