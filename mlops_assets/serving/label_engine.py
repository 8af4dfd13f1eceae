"""The business-rules layer after the model ("label engine"): scores become risk bands and actions,
with overrides the business owns. Rules come from the model config, not code."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.models.config import LabelEngineConfig


def apply_rules(
    scores: np.ndarray, features: pd.DataFrame, rules: LabelEngineConfig, threshold: float
) -> pd.DataFrame:
    """Risk band and predicted label for each score; overrides can raise a band, never lower it."""
    bands = rules.bands
    edges = np.array([b.min_score for b in bands])
    order = np.argsort(edges)
    index = np.searchsorted(edges[order], scores, side="right") - 1
    band_idx = order[np.clip(index, 0, len(bands) - 1)]
    rank = np.array([rules.band_rank(b.name) for b in bands])[band_idx]
    reason = np.full(len(scores), "score", dtype=object)
    for override in rules.overrides:
        mask = np.ones(len(scores), dtype=bool)
        for column, allowed in override.when.items():
            if column not in features.columns:
                raise KeyError(f"label engine override {override.name!r} needs feature {column!r}")
            mask &= features[column].isin(allowed).to_numpy()
        for column, minimum in override.min_values.items():
            if column not in features.columns:
                raise KeyError(f"label engine override {override.name!r} needs feature {column!r}")
            mask &= features[column].fillna(-np.inf).to_numpy() >= minimum
        floor = rules.band_rank(override.at_least)
        raise_it = mask & (rank < floor)
        rank = np.where(raise_it, floor, rank)
        reason = np.where(raise_it, f"override:{override.name}", reason)
    names = np.array(sorted((b.name for b in bands), key=rules.band_rank))
    return pd.DataFrame(
        {
            "risk_band": names[rank],
            "prediction": (scores >= threshold).astype("int32"),
            "rule": reason.astype(str),
        }
    )
