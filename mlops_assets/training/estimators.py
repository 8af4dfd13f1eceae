"""Training and evaluation, shared by the KFP components and the promotion gate (pure functions on
pandas frames; no Dagster, no MLflow)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from mlops_assets.model_config import ModelConfig, Thresholds


class TrainingError(ValueError):
    """Bad training input (a user or data mistake), with a message that says which."""


def feature_frame(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The model's inputs: the dataset's features, minus raw timestamps (recency is a feature)."""
    import pandas as pd

    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise TrainingError(f"dataset lacks features the service needs: {missing}")
    usable = [f for f in features if not pd.api.types.is_datetime64_any_dtype(frame[f])]
    return frame[usable]


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype) == "string"]


def build_estimator(config: ModelConfig, frame: pd.DataFrame, kind: str = "model") -> Pipeline:
    """The config's algorithm with its params (kind `model`), or the logistic baseline every
    model is compared with (kind `baseline`), as an unfitted pipeline over `frame`'s columns."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    categorical = categorical_columns(frame)
    numeric = [c for c in frame.columns if c not in categorical]
    if kind == "baseline":
        pre = _scaled_one_hot(numeric, categorical)
        return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    params = config.params
    if config.algorithm == "logistic_regression":
        clf = LogisticRegression(
            C=params.C, class_weight=params.class_weight, max_iter=params.max_iter
        )
        return Pipeline([("pre", _scaled_one_hot(numeric, categorical)), ("clf", clf)])
    return _hist_gradient_boosting(params, numeric, categorical)


def _scaled_one_hot(numeric: list[str], categorical: list[str]) -> Any:
    """Mean-imputed, standardized numeric columns and one-hot categoricals (unknown categories:
    all zeros): what a linear model needs."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            (
                "num",
                Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                numeric,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )


def _hist_gradient_boosting(params: Any, numeric: list[str], categorical: list[str]) -> Pipeline:
    """Numeric columns as they are, categoricals ordinal-encoded for native categorical splits
    (the shape mlops_assets/serving/compiled.py compiles)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    pre = ColumnTransformer(
        [
            ("num", "passthrough", numeric),
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    clf = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=params.early_stopping,
        categorical_features=[len(numeric) + i for i in range(len(categorical))],
        random_state=0,
    )
    return Pipeline([("pre", pre), ("clf", clf)])


@dataclass
class Baseline:
    """The logistic baseline: its train-only fit's scores on validation, and its refit on
    train + validation (what the pipeline evaluates on the test split beside the model)."""

    validation_scores: np.ndarray
    refit: Pipeline


@dataclass
class Search:
    """What the pipeline's training step gets from the search: the config with the winning
    params, every candidate's trial, the winner's validation scores (from its train-only fit:
    where `decision_threshold: auto` is chosen) and the baseline."""

    tuned: ModelConfig
    trials: list[dict]
    validation_scores: np.ndarray
    baseline: Baseline


def tune(
    config: ModelConfig, train: pd.DataFrame, validation: pd.DataFrame, features: list[str]
) -> tuple[ModelConfig, list[dict]]:
    """Pick the tuning grid's best parameters by validation ROC AUC; returns the config to refit
    with and every candidate's score. With early stopping on, each candidate stops on the
    validation split (the time-based one, not a random slice of train) and the winner is refit
    for the number of rounds it chose there. Candidates are fitted side by side in forked worker
    processes (`tuning.workers`); the result is the same as one after the other."""
    tuned, trials, _, _ = _search(config, train, validation, features, baseline=False)
    return tuned, trials


def tune_with_baseline(
    config: ModelConfig, train: pd.DataFrame, validation: pd.DataFrame, features: list[str]
) -> Search:
    """`tune`, and the baseline's two fits as two more tasks of the same workers: they fill the
    time the last candidates leave a worker idle instead of running after the search."""
    tuned, trials, scores, baseline = _search(config, train, validation, features, baseline=True)
    assert baseline is not None
    return Search(tuned, trials, scores, baseline)


def refit_on_train_and_validation(
    search: Search, train: pd.DataFrame, validation: pd.DataFrame, features: list[str]
) -> dict[str, Pipeline]:
    """The search's winner refit on train + validation, beside the baseline's refit (already made
    by the search's workers): the two estimators the pipeline saves, evaluates and registers."""
    import pandas as pd

    full = pd.concat([train, validation])
    X = feature_frame(full, features)
    model = build_estimator(search.tuned, X, "model").fit(X, full[search.tuned.label])
    return {"model": model, "baseline": search.baseline.refit}


def _search(config, train, validation, features, baseline: bool):
    global _FORKED_INPUTS

    X_train, X_val = feature_frame(train, features), feature_frame(validation, features)
    y_train, y_val = train[config.label], validation[config.label]
    candidates = config.tuning.candidates(config.params)
    jobs = [("trial", params) for params in candidates]
    if baseline:
        jobs += [("baseline", "validation"), ("baseline", "refit")]
    inputs = (config, X_train, y_train, X_val, y_val)
    workers = min(len(jobs), config.tuning.workers or _usable_cpus())
    if workers > 1:
        import multiprocessing

        # fork: the workers start in milliseconds with the frames already in their memory (a
        # fresh interpreter would spend ~1 s importing scikit-learn, and each task would pickle
        # the frames); only the candidates' parameters and results cross the pipe.
        _FORKED_INPUTS = inputs
        _load_native_libraries()  # the workers inherit them loaded, and can limit their threads
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals)
        try:
            results = pool.map(_forked_job, jobs, chunksize=1)
            # Done: the workers exit on their own. (Pool's context manager would terminate them:
            # a worker killed while it holds the task queue's lock leaves another one waiting on
            # it forever, and one that inherited SIGTERM ignored cannot be terminated at all.)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            _FORKED_INPUTS = None
    else:
        results = [_job(inputs, job) for job in jobs]
    trials = results[: len(candidates)]
    scores = [t.pop("validation_scores", None) for t in trials]  # not part of the record
    best = max(range(len(trials)), key=lambda i: trials[i]["validation_roc_auc"])
    tuned = config.model_copy(update={"params": type(config.params)(**trials[best]["params"])})
    base = Baseline(*results[len(candidates) :]) if baseline else None
    return tuned, trials, scores[best], base


_FORKED_INPUTS: tuple | None = None  # what tune's forked workers inherit


def _worker_signals() -> None:
    """A tuning worker stops on SIGTERM and Ctrl-C even when its process inherited them ignored
    (a KFP step started under Dagster or a background shell does)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _load_native_libraries() -> None:
    """Import what loads scikit-learn's OpenMP and BLAS libraries. threadpoolctl limits only the
    libraries already loaded: one loaded inside the limit keeps a thread per CPU, and two workers
    with two OpenMP threads each on two CPUs took longer than one fit after the other."""
    import importlib

    for module in ("sklearn.ensemble", "sklearn.linear_model"):  # OpenMP (the boosting), BLAS
        importlib.import_module(module)


def _forked_job(job: tuple[str, Any]) -> Any:
    """One task in a forked worker, single-threaded: the workers already use every CPU."""
    from threadpoolctl import threadpool_limits

    assert _FORKED_INPUTS is not None, "a tuning worker must be forked by tune()"
    _load_native_libraries()
    with threadpool_limits(1):
        return _job(_FORKED_INPUTS, job)


def _job(inputs: tuple, job: tuple[str, Any]) -> Any:
    """A candidate's trial, or one of the baseline's fits (the `job` names which)."""
    kind, what = job
    if kind == "trial":
        return _trial(*inputs, what)
    import pandas as pd

    config, X_train, y_train, X_val, y_val = inputs
    if what == "validation":  # fitted on train only: its validation scores are fair
        base = build_estimator(config, X_train, "baseline").fit(X_train, y_train)
        return base.predict_proba(X_val)[:, 1]
    X, y = pd.concat([X_train, X_val]), pd.concat([y_train, y_val])
    return build_estimator(config, X, "baseline").fit(X, y)


def _trial(
    config: ModelConfig,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    params: Any,
) -> dict:
    """One candidate's fit on train: its params, validation ROC AUC and validation scores."""
    from sklearn.metrics import roc_auc_score

    model = build_estimator(config.model_copy(update={"params": params}), X_train)
    if getattr(params, "early_stopping", False):  # the boosting's rounds, chosen on validation
        prepare, classifier = model[:-1], model[-1]
        prepare.fit(X_train, y_train)
        classifier.fit(
            prepare.transform(X_train), y_train, X_val=prepare.transform(X_val), y_val=y_val
        )
        params = params.model_copy(
            update={"max_iter": int(classifier.n_iter_), "early_stopping": False}
        )
    else:
        model.fit(X_train, y_train)
    scores = model.predict_proba(X_val)[:, 1]
    auc = float(roc_auc_score(y_val, scores))
    return {"params": params.model_dump(), "validation_roc_auc": auc, "validation_scores": scores}


def _usable_cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_labels(y: pd.Series, split: str) -> None:
    classes = sorted(set(y.dropna().unique().tolist()))
    if len(classes) < 2:
        raise TrainingError(
            f"the {split} split has a single label class {classes}: nothing to learn or rank"
        )


def evaluate(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, limits: Thresholds | None = None
) -> dict[str, float]:
    """The split's metrics at `threshold`; with the config's `limits`, also the imbalanced-data
    ones (mlops_assets/training/thresholds.py: expected cost, recall at precision, threshold)."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    from mlops_assets.training.thresholds import imbalance_metrics

    predicted = (scores >= threshold).astype(int)
    extra = imbalance_metrics(y_true, scores, threshold, limits) if limits is not None else {}
    return extra | {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "brier": float(brier_score_loss(y_true, scores)),
        "ece": expected_calibration_error(y_true, scores),
        "positive_rate": float(np.mean(y_true)),
        "rows": float(len(y_true)),
    }


def expected_calibration_error(y_true: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(np.mean(y_true[mask])) - float(np.mean(scores[mask])))
    return float(total)


def read_split(folder: Path, split: str) -> pd.DataFrame:
    import pandas as pd

    path = folder / f"{split}.parquet"
    if not path.exists():
        raise TrainingError(f"dataset split {split!r} not found at {path}")
    return pd.read_parquet(path)


def dataset_schema(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "schema.json").read_text())
