"""The business-rules layer after the model ("label engine"): scores become risk bands and actions,
with overrides the business owns. Rules come from the model config, not code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlops_assets.model_config import LabelEngineConfig


def apply_rules(
    scores: np.ndarray,
    features: Mapping[str, Any],
    rules: LabelEngineConfig,
    threshold: float | np.ndarray,
) -> dict[str, np.ndarray]:
    """Risk band and predicted label for each score; overrides can raise a band, never lower it.
    `features` maps a column name to its values (a DataFrame, or a dict of lists online);
    `threshold` is one number or one per score (rows served by versions with their own)."""
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
            mask &= np.isin(
                np.asarray(_column(features, override.name, column), dtype=object), allowed
            )
        for column, minimum in override.min_values.items():
            values = np.asarray(
                _column(features, override.name, column), dtype=float
            )  # None -> NaN
            mask &= np.nan_to_num(values, nan=-np.inf) >= minimum
        floor = rules.band_rank(override.at_least)
        raise_it = mask & (rank < floor)
        rank = np.where(raise_it, floor, rank)
        reason = np.where(raise_it, f"override:{override.name}", reason)
    names = np.array(sorted((b.name for b in bands), key=rules.band_rank), dtype=object)
    return {
        "risk_band": names[rank],
        "prediction": (scores >= threshold).astype("int32"),
        "rule": reason.astype(object),
    }


def _column(features: Mapping[str, Any], override: str, column: str) -> Any:
    if column not in features:
        raise KeyError(f"label engine override {override!r} needs feature {column!r}")
    return features[column]
