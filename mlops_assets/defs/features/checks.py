"""Checks on the training set as written (they read the Parquet files, not the asset's claims)."""

import dagster as dg

from mlops_assets.defs.features.assets import CHURN_DATASET, SERVICE
from mlops_assets.defs.features.resources import FeatureStoreResource

LABEL_BALANCE_CHECK = "dataset_labels_have_both_classes"
TIME_ORDER_CHECK = "dataset_splits_are_time_ordered"
MIN_MINORITY_SHARE = 0.02


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            LABEL_BALANCE_CHECK,
            asset=CHURN_DATASET,
            description=f"Every split has both labels, the rarer at least {MIN_MINORITY_SHARE:.0%}.",
        ),
        dg.AssetCheckSpec(
            TIME_ORDER_CHECK,
            asset=CHURN_DATASET,
            description="train < validation < test in time, with no shared as-of time.",
        ),
    ],
    can_subset=True,
)
def training_dataset_checks(feature_store: FeatureStoreResource):
    import pandas as pd

    from mlops_assets.datasets.training_set import LABEL, SPLITS, TIMESTAMP

    folder = feature_store.settings().datasets_dir / SERVICE
    parts = {
        s: pd.read_parquet(folder / f"{s}.parquet", columns=[TIMESTAMP, LABEL]) for s in SPLITS
    }
    rates = {s: float(p[LABEL].mean()) if len(p) else float("nan") for s, p in parts.items()}
    minority = {s: min(r, 1 - r) for s, r in rates.items()}
    balanced = all(len(parts[s]) and minority[s] >= MIN_MINORITY_SHARE for s in SPLITS)
    yield dg.AssetCheckResult(
        check_name=LABEL_BALANCE_CHECK,
        asset_key=CHURN_DATASET,
        passed=bool(balanced),
        metadata={
            **{f"label_rate_{s}": round(r, 4) for s, r in rates.items()},
            **{f"rows_{s}": len(p) for s, p in parts.items()},
        },
    )
    bounds = {s: (p[TIMESTAMP].min(), p[TIMESTAMP].max()) for s, p in parts.items() if len(p)}
    ordered = len(bounds) == 3 and (
        bounds["train"][1] < bounds["validation"][0] and bounds["validation"][1] < bounds["test"][0]
    )
    yield dg.AssetCheckResult(
        check_name=TIME_ORDER_CHECK,
        asset_key=CHURN_DATASET,
        passed=bool(ordered),
        metadata={f"{s}_range": f"{lo} .. {hi}" for s, (lo, hi) in bounds.items()},
    )
