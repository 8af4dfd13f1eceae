"""Typed model configs, one YAML file per model under model_configs/."""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops_assets.settings import PROJECT_ROOT

CONFIG_DIR = PROJECT_ROOT / "model_configs"
# Another folder of model configs (tests, a second deployment of the code): MLOPS_MODEL_CONFIGS.
CONFIG_DIR_ENV = "MLOPS_MODEL_CONFIGS"


class HistGradientBoostingParams(BaseModel):
    """`algorithm: hist_gradient_boosting`: scikit-learn's HistGradientBoostingClassifier on
    ordinal-encoded categoricals (native categorical splits)."""

    model_config = ConfigDict(extra="forbid")

    # The discriminator, filled from the config's `algorithm` (not written under `params`).
    algorithm: Literal["hist_gradient_boosting"] = Field("hist_gradient_boosting", exclude=True)
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_iter: int = Field(200, ge=1)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    early_stopping: bool = True


class LogisticRegressionParams(BaseModel):
    """`algorithm: logistic_regression`: scaled numeric features (mean-imputed) and one-hot
    categoricals into scikit-learn's LogisticRegression (L2)."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["logistic_regression"] = Field("logistic_regression", exclude=True)
    # Inverse regularization strength (smaller: stronger regularization).
    C: float = Field(1.0, gt=0)
    # `balanced` weighs each class by the inverse of its frequency (rare positives count more);
    # a mapping gives each label its weight; None: every row weighs the same.
    class_weight: Literal["balanced"] | dict[int, float] | None = None
    max_iter: int = Field(1000, ge=1)


# Every algorithm a config can choose, with its own typed params.
ALGORITHMS: dict[str, type[BaseModel]] = {
    "hist_gradient_boosting": HistGradientBoostingParams,
    "logistic_regression": LogisticRegressionParams,
}
Algorithm = Literal["hist_gradient_boosting", "logistic_regression"]
Params = Annotated[
    HistGradientBoostingParams | LogisticRegressionParams, Field(discriminator="algorithm")
]


class Tuning(BaseModel):
    """A small grid searched on the validation split (ROC AUC); the best settings are refit on
    train + validation. Every other key is a list that overrides the same field of the
    algorithm's `params` (e.g. `learning_rate: [0.05, 0.1]`, or `C: [0.1, 1.0]`)."""

    model_config = ConfigDict(extra="allow")

    max_candidates: int = Field(6, ge=1)
    # Candidates fitted at once, each in its own process; None: one per CPU this process may use
    # (set it on a cluster, where a container's CPU limit is not what the node reports).
    workers: int | None = Field(None, ge=1)

    def candidates(self, base: BaseModel) -> list[Any]:
        """The grid's settings (at most `max_candidates`), each validated as the algorithm's
        params; raises ValueError naming a field the algorithm does not have."""
        fields = [f for f in type(base).model_fields if f != "algorithm"]
        algorithm = getattr(base, "algorithm", type(base).__name__)
        grid = {}
        for name, values in (self.model_extra or {}).items():
            if name not in fields:
                raise ValueError(
                    f"tuning.{name}: {algorithm} has no parameter {name!r} (its parameters: "
                    f"{', '.join(fields)})"
                )
            if not isinstance(values, list):
                raise ValueError(f"tuning.{name}: expected a list of values, got {values!r}")
            if values:
                grid[name] = values
        if not grid:
            return [base]
        combos = itertools.islice(itertools.product(*grid.values()), self.max_candidates)
        try:
            return [
                type(base).model_validate(
                    {**base.model_dump(), **dict(zip(grid, combo, strict=True))}
                )
                for combo in combos
            ]
        except ValidationError as err:
            raise ValueError(f"tuning: a value does not fit {algorithm}'s params: {err}") from None


class RecallAtPrecision(BaseModel):
    """The highest recall of any score threshold whose precision is at least `precision`."""

    model_config = ConfigDict(extra="forbid")

    precision: float = Field(gt=0, le=1)
    min_recall: float = Field(ge=0, le=1)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_roc_auc: float = Field(0.7, ge=0, le=1)
    min_pr_auc: float = Field(0.3, ge=0, le=1)
    max_brier: float = Field(0.25, ge=0, le=1)
    max_regression_vs_champion: float = Field(0.01, ge=0, le=1)
    # For imbalanced labels: the best recall reachable at `precision` must be >= `min_recall`.
    min_recall_at_precision: RecallAtPrecision | None = None
    # What one false positive / false negative costs (any unit): `decision_threshold: auto`
    # minimises this expected cost, and `compare_on: expected_cost` compares it.
    cost_false_positive: float = Field(1.0, ge=0)
    cost_false_negative: float = Field(1.0, ge=0)
    # The metric the challenger is compared with the champion on (same holdout). For
    # expected_cost (lower is better), max_regression_vs_champion is relative: the challenger's
    # cost may exceed the champion's by at most that share.
    compare_on: Literal["roc_auc", "pr_auc", "expected_cost"] = "roc_auc"


class RiskBand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    min_score: float = Field(ge=0, le=1)


class RuleOverride(BaseModel):
    """Raise the band of rows matching every condition to at least `at_least`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    when: dict[str, list[str]] = {}
    min_values: dict[str, float] = {}
    at_least: str


class LabelEngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bands: list[RiskBand] = [
        RiskBand(name="low", min_score=0.0),
        RiskBand(name="medium", min_score=0.3),
        RiskBand(name="high", min_score=0.6),
        RiskBand(name="critical", min_score=0.85),
    ]
    overrides: list[RuleOverride] = []

    def band_rank(self, name: str) -> int:
        ordered = sorted(self.bands, key=lambda b: b.min_score)
        for rank, band in enumerate(ordered):
            if band.name == name:
                return rank
        raise ValueError(f"unknown risk band {name!r}; bands are {[b.name for b in ordered]}")


class ServingConfig(BaseModel):
    """The online predictor: where it listens locally, the canary share, request limits and how the
    inference log batches its Iceberg commits."""

    model_config = ConfigDict(extra="forbid")

    port: int = Field(8085, ge=1024, le=65535)
    # Share of customers (sticky by customer id) sent to the challenger while a canary runs.
    canary_percent: int = Field(20, ge=0, le=100)
    max_body_bytes: int = Field(64 * 1024, ge=256)
    max_instances: int = Field(500, ge=1)
    log_flush_rows: int = Field(500, ge=1)
    log_flush_seconds: float = Field(1.0, gt=0)
    # Inference log upkeep (defs/serving/maintenance.py): compaction, snapshot retention.
    log_compact_target_mb: int = Field(128, ge=1)
    log_compact_min_files: int = Field(10, ge=2)
    log_snapshot_retention_minutes: int = Field(30, ge=1)
    log_retain_snapshots: int = Field(10, ge=1)
    # Seconds a (re)deployment may take to become ready before the old version is kept.
    ready_timeout_seconds: float = Field(120, gt=0)


# The per-group rates the fairness monitor compares (mlops_assets/monitoring/fairness.py).
FairnessMetric = Literal["selection_rate", "recall", "false_positive_rate", "precision", "roc_auc"]


class FairnessConfig(BaseModel):
    """The fairness monitor: on the predictions whose actuals are due, each rate per group of
    each segment attribute (a feature of the model's service, as at prediction time), and the
    gap between its best and worst group."""

    model_config = ConfigDict(extra="forbid")

    # Feature columns whose values are the groups (plan, country_code, ...); none: not monitored.
    segments: list[str] = []
    # The prediction days pooled per monitoring day: the day whose actuals are due and the ones
    # before it (one day of a small population has too few rows per group to judge).
    window_days: int = Field(1, ge=1)
    # Smaller groups are reported with their count only, and left out of the gaps.
    min_group_size: int = Field(100, ge=1)
    # A group's rate needs this many rows in its denominator (positives for recall, negatives
    # for the false positive rate, predicted positives for precision, each class for ROC AUC);
    # below it the rate is undefined for that group.
    min_class_rows: int = Field(10, ge=1)
    # Breached when a metric's largest between-group difference exceeds its limit ...
    max_difference: dict[FairnessMetric, Annotated[float, Field(gt=0, le=1)]] = {
        "selection_rate": 0.2,
        "recall": 0.2,
        "false_positive_rate": 0.2,
    }
    # ... or its smallest between-group ratio (worst / best) falls below this (0.8: four fifths).
    min_ratio: dict[FairnessMetric, Annotated[float, Field(ge=0, lt=1)]] = {}


class OnlineDriftConfig(BaseModel):
    """The online drift sensor: a window of the latest `window_rows` logged requests, evaluated
    every `step_rows` new ones (from `min_rows`) against the champion's reference;
    `consecutive_windows` breached in a row open an incident (one retraining, under the cooldown),
    `clean_windows_to_close` clean in a row close it. Empty thresholds: the daily monitors'."""

    model_config = ConfigDict(extra="forbid")

    window_rows: int = Field(2000, ge=10)
    min_rows: int = Field(1000, ge=10)
    step_rows: int = Field(400, ge=1)
    consecutive_windows: int = Field(3, ge=1)
    clean_windows_to_close: int = Field(5, ge=1)
    # Numeric features with fewer distinct reference values are compared as categories (no KS).
    min_distinct_for_ks: int = Field(20, ge=2)
    max_rows_per_read: int = Field(20_000, ge=1)  # per evaluation; a backlog keeps the newest
    psi_max: float | None = Field(None, gt=0)
    ks_pvalue: float | None = Field(None, gt=0, lt=1)
    max_drifted_share: float | None = Field(None, ge=0, le=1)
    prediction_psi_max: float | None = Field(None, gt=0)


class ExplainConfig(BaseModel):
    """`:explain`'s entities per request; the k top reasons in daily predictions (0 = off)."""

    model_config = ConfigDict(extra="forbid")
    max_instances: int = Field(50, ge=1, le=1000)
    top_reasons_k: int = Field(0, ge=0, le=50)


class MonitoringConfig(BaseModel):
    """Thresholds of the monitoring checks, and when a degradation is worth a retraining."""

    model_config = ConfigDict(extra="forbid")

    # performance against delayed actuals (the prediction day whose actuals are due)
    min_roc_auc: float = Field(0.70, ge=0, le=1)
    # ... and at most this far below the version's own ROC AUC on its holdout (from MLflow)
    max_roc_auc_drop: float = Field(0.03, ge=0, le=1)
    max_ece: float = Field(0.10, ge=0, le=1)
    min_labelled_rows: int = Field(200, ge=1)
    # feature drift against the champion's training data: a feature drifts when both hold
    ks_pvalue: float = Field(0.01, gt=0, lt=1)
    psi_max: float = Field(0.2, gt=0)
    max_drifted_share: float = Field(0.2, ge=0, le=1)
    # Features that grow with time by construction (cumulative counts, tenure): not drift.
    drift_exclude: list[str] = []
    # prediction drift: PSI of the day's scores against the champion's scores on its training data
    prediction_psi_max: float = Field(0.2, gt=0)
    # data quality and volume
    min_rows: int = Field(100, ge=0)
    max_null_share: float = Field(0.05, ge=0, le=1)
    max_volume_change: float = Field(0.5, ge=0)
    # The retraining sensor: only a degradation seen on this many consecutive monitored days counts
    # (one bad day is noise), and at most one retraining per cooldown.
    consecutive_days: int = Field(3, ge=1)
    cooldown_hours: float = Field(24, ge=0)
    # The canary sensor: decide once each arm has this many labelled predictions.
    canary_min_labelled: int = Field(300, ge=1)
    canary_max_auc_regression: float = Field(0.0, ge=0, le=1)
    # Drift on the live inference stream (sensor), beside the daily monitors.
    online: OnlineDriftConfig = OnlineDriftConfig()
    # fairness by segment (plan, country, channel): gaps between groups over these limits
    fairness: FairnessConfig = FairnessConfig()


class ActualsConfig(BaseModel):
    """How a batch prediction's actual outcome becomes known once its label window has passed.

    `label_table`: the label of the prediction's entity in the model's label table (the row of its
    newest as-of time at or before the prediction's); an order model's chargebacks, say.
    `no_event`: 1 when the entity has no row in `events_table` in the window after the
    prediction's as-of time (a customer model's churn: no order at all).
    Either way, landed data ends the day after the newest `events_timestamp` of `events_table`,
    and a day's actuals are filled once its window lies inside it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["label_table", "no_event"] = "label_table"
    events_table: str = "silver.fct_orders"
    events_timestamp: str = "ordered_at"


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    registered_model: str
    feature_service: str
    # The labels: a warehouse table with the entity key, `event_timestamp` (the as-of time),
    # `label_available_at` and the 0/1 label column.
    label_table: str
    entity: str = "customer_id"
    # The keys that identify one prediction (each an INT64 input of a request and a join key of
    # the feature service's entities); default: [entity]. The canary hashes `entity`.
    join_keys: list[str] = []
    label: str
    # Days after a prediction's as-of time until its label is known (dbt builds the labels with
    # the same window: var `<name>_label_window_days`).
    label_window_days: int = Field(30, ge=1)
    actuals: ActualsConfig = ActualsConfig()
    algorithm: Algorithm = "hist_gradient_boosting"
    # The algorithm's own settings: each algorithm has its fields (ALGORITHMS), others are errors.
    params: Params = HistGradientBoostingParams()
    tuning: Tuning = Tuning()
    # Scores at or above it predict the label. `auto`: the threshold that minimises the expected
    # cost (thresholds.cost_*) on the validation split, chosen at training time and stored with
    # the model (mlops_assets/training/thresholds.py).
    decision_threshold: Annotated[float, Field(gt=0, lt=1)] | Literal["auto"] = 0.5
    thresholds: Thresholds = Thresholds()
    label_engine: LabelEngineConfig = LabelEngineConfig()
    serving: ServingConfig = ServingConfig()
    explain: ExplainConfig = ExplainConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retrain_cron: str = "0 2 * * 0"

    @model_validator(mode="before")
    @classmethod
    def _params_of_the_algorithm(cls, data: Any) -> Any:
        """`params` are validated as the chosen algorithm's (the union's discriminator)."""
        if isinstance(data, dict) and isinstance(data.get("params", {}), dict):
            algorithm = data.get("algorithm", "hist_gradient_boosting")
            params = data.get("params", {})
            if params.get("algorithm", algorithm) != algorithm:
                raise ValueError(
                    f"params.algorithm {params['algorithm']!r} differs from algorithm {algorithm!r}"
                )
            data = {**data, "params": {**params, "algorithm": algorithm}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _join_keys_default_to_the_entity(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("join_keys"):
            data = {**data, "join_keys": [data.get("entity", "customer_id")]}
        return data

    @model_validator(mode="after")
    def _entity_is_a_join_key(self) -> ModelConfig:
        if self.entity not in self.join_keys:
            raise ValueError(f"entity {self.entity!r} must be one of join_keys {self.join_keys}")
        if len(set(self.join_keys)) != len(self.join_keys):
            raise ValueError(f"join_keys {self.join_keys} name a key twice")
        return self

    @model_validator(mode="after")
    def _tuning_fits_the_algorithm(self) -> ModelConfig:
        if not isinstance(self.params, ALGORITHMS[self.algorithm]):
            raise ValueError(
                f"params are {type(self.params).__name__}, not the params of {self.algorithm}"
            )
        self.tuning.candidates(self.params)
        return self


def load_config(path: Path) -> ModelConfig:
    return ModelConfig.model_validate(yaml.safe_load(path.read_text()))


@cache
def model_configs() -> dict[str, ModelConfig]:
    """Every model config, by name: model_configs/*.yaml, or the folder MLOPS_MODEL_CONFIGS
    names (read on the first call; `model_configs.cache_clear()` reads it again)."""
    import os

    folder = Path(os.environ.get(CONFIG_DIR_ENV) or CONFIG_DIR)
    configs = [load_config(p) for p in sorted(folder.glob("*.yaml"))]
    return {c.name: c for c in configs}


def dbt_vars() -> str:
    """What dbt needs from the model configs (each model's label window), for `--vars`."""
    import json

    values = {f"{c.name}_label_window_days": c.label_window_days for c in model_configs().values()}
    return json.dumps(values, sort_keys=True)
