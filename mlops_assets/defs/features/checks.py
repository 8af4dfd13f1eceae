"""Checks on a training set as written (they read the Parquet files, not the asset's claims)."""

from collections.abc import Iterator

import dagster as dg

from mlops_assets.model_config import ModelConfig
from mlops_assets.settings import get_settings

LABEL_BALANCE_CHECK = "dataset_labels_have_both_classes"
TIME_ORDER_CHECK = "dataset_splits_are_time_ordered"
# Rows of the rarer label every split needs to train and evaluate on: a count, not a share, so
# that a rare label (fraud at ~1.5 %) with enough examples passes.
MIN_MINORITY_ROWS = 30
DATASET_CHECKS = (
    (
        LABEL_BALANCE_CHECK,
        f"Every split has both labels, at least {MIN_MINORITY_ROWS} rows of the rarer one.",
    ),
    (TIME_ORDER_CHECK, "train < validation < test in time, with no shared as-of time."),
)


def dataset_checks(config: ModelConfig, key: dg.AssetKey) -> Iterator[dg.AssetCheckResult]:
    import pandas as pd

    from mlops_assets.datasets.training_set import SPLITS, TIMESTAMP
    from mlops_assets.datasets.versioning import datasets_dir

    folder = datasets_dir(get_settings()) / config.feature_service
    label = config.label
    parts = {
        s: pd.read_parquet(folder / f"{s}.parquet", columns=[TIMESTAMP, label]) for s in SPLITS
    }
    rates = {s: float(p[label].mean()) if len(p) else float("nan") for s, p in parts.items()}
    counts = {s: int(p[label].sum()) for s, p in parts.items()}
    minority = {s: min(counts[s], len(parts[s]) - counts[s]) for s in SPLITS}
    balanced = all(minority[s] >= MIN_MINORITY_ROWS for s in SPLITS)
    yield dg.AssetCheckResult(
        check_name=LABEL_BALANCE_CHECK,
        asset_key=key,
        passed=bool(balanced),
        metadata={
            **{f"label_rate_{s}": round(r, 4) for s, r in rates.items()},
            **{f"rows_{s}": len(p) for s, p in parts.items()},
            **{f"minority_rows_{s}": n for s, n in minority.items()},
        },
    )
    bounds = {s: (p[TIMESTAMP].min(), p[TIMESTAMP].max()) for s, p in parts.items() if len(p)}
    ordered = len(bounds) == 3 and (
        bounds["train"][1] < bounds["validation"][0] and bounds["validation"][1] < bounds["test"][0]
    )
    yield dg.AssetCheckResult(
        check_name=TIME_ORDER_CHECK,
        asset_key=key,
        passed=bool(ordered),
        metadata={f"{s}_range": f"{lo} .. {hi}" for s, (lo, hi) in bounds.items()},
    )
