"""Typed model configs, one YAML file per model under model_configs/."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.settings import PROJECT_ROOT

CONFIG_DIR = PROJECT_ROOT / "model_configs"


class GradientBoostingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(0.1, gt=0, le=1)
    max_iter: int = Field(200, ge=1)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    early_stopping: bool = True


class Tuning(BaseModel):
    """A small grid searched on the validation split (ROC AUC); the best settings are refit on
    train + validation. Each list overrides the same field of `params`."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: list[float] = []
    max_leaf_nodes: list[int] = []
    min_samples_leaf: list[int] = []
    max_candidates: int = Field(6, ge=1)
    # Candidates fitted at once, each in its own process; None: one per CPU this process may use
    # (set it on a cluster, where a container's CPU limit is not what the node reports).
    workers: int | None = Field(None, ge=1)

    def candidates(self, base: GradientBoostingParams) -> list[GradientBoostingParams]:
        import itertools

        grid = {
            k: v
            for k, v in self.model_dump().items()
            if k not in {"max_candidates", "workers"} and v
        }
        if not grid:
            return [base]
        combos = itertools.product(*grid.values())
        return [base.model_copy(update=dict(zip(grid, combo, strict=True))) for combo in combos][
            : self.max_candidates
        ]


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_roc_auc: float = Field(0.7, ge=0, le=1)
    min_pr_auc: float = Field(0.3, ge=0, le=1)
    max_brier: float = Field(0.25, ge=0, le=1)
    max_regression_vs_champion: float = Field(0.01, ge=0, le=1)


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
    # Seconds a (re)deployment may take to become ready before the old version is kept.
    ready_timeout_seconds: float = Field(120, gt=0)


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


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    registered_model: str
    feature_service: str
    # The labels: a warehouse table with the entity key, `event_timestamp` (the as-of time),
    # `label_available_at` and the 0/1 label column.
    label_table: str
    entity: str = "customer_id"
    label: str
    # Days after a prediction's as-of time until its label is known (dbt builds the labels with
    # the same window: var `<name>_label_window_days`).
    label_window_days: int = Field(30, ge=1)
    algorithm: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"
    params: GradientBoostingParams = GradientBoostingParams()
    tuning: Tuning = Tuning()
    decision_threshold: float = Field(0.5, gt=0, lt=1)
    thresholds: Thresholds = Thresholds()
    label_engine: LabelEngineConfig = LabelEngineConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retrain_cron: str = "0 2 * * 0"


def load_config(path: Path) -> ModelConfig:
    return ModelConfig.model_validate(yaml.safe_load(path.read_text()))


@cache
def model_configs() -> dict[str, ModelConfig]:
    configs = [load_config(p) for p in sorted(CONFIG_DIR.glob("*.yaml"))]
    return {c.name: c for c in configs}


def dbt_vars() -> str:
    """What dbt needs from the model configs (each model's label window), for `--vars`."""
    import json

    values = {f"{c.name}_label_window_days": c.label_window_days for c in model_configs().values()}
    return json.dumps(values, sort_keys=True)
