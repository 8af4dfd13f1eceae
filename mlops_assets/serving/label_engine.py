"""The business-rules layer after the model ("label engine"): scores become risk bands and actions,
with overrides the business owns. Rules come from the model config, not code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    plan = _plan(rules)
    index = np.searchsorted(plan.sorted_edges, scores, side="right") - 1
    band_idx = plan.order[np.clip(index, 0, len(plan.order) - 1)]
    rank = plan.ranks[band_idx]
    reason = np.full(len(scores), "score", dtype=object)
    for name, when, min_values, floor in plan.overrides:
        mask = np.ones(len(scores), dtype=bool)
        for column, allowed in when:
            mask &= np.isin(np.asarray(_column(features, name, column), dtype=object), allowed)
        for column, minimum in min_values:
            values = np.asarray(_column(features, name, column), dtype=float)  # None -> NaN
            mask &= np.nan_to_num(values, nan=-np.inf) >= minimum
        raise_it = mask & (rank < floor)
        rank = np.where(raise_it, floor, rank)
        reason = np.where(raise_it, f"override:{name}", reason)
    return {
        "risk_band": plan.names[rank],
        "prediction": (scores >= threshold).astype("int32"),
        "rule": reason.astype(object),
    }


@dataclass(frozen=True)
class _Plan:
    """What apply_rules derives from a config, once: band edges in order, each band's rank, the
    band names by rank, and per override its conditions and floor rank."""

    sorted_edges: np.ndarray
    order: np.ndarray
    ranks: np.ndarray
    names: np.ndarray
    overrides: tuple[tuple[str, tuple, tuple, int], ...]


_PLANS: dict[int, tuple[LabelEngineConfig, _Plan]] = {}


def _plan(rules: LabelEngineConfig) -> _Plan:
    cached = _PLANS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    bands = rules.bands
    edges = np.array([b.min_score for b in bands])
    order = np.argsort(edges)
    plan = _Plan(
        sorted_edges=edges[order],
        order=order,
        ranks=np.array([rules.band_rank(b.name) for b in bands]),
        names=np.array(sorted((b.name for b in bands), key=rules.band_rank), dtype=object),
        overrides=tuple(
            (
                o.name,
                tuple(o.when.items()),
                tuple(o.min_values.items()),
                rules.band_rank(o.at_least),
            )
            for o in rules.overrides
        ),
    )
    if len(_PLANS) > 64:  # configs are few; a long-lived process may see reloaded copies
        _PLANS.clear()
    _PLANS[id(rules)] = (rules, plan)
    return plan


def _column(features: Mapping[str, Any], override: str, column: str) -> Any:
    if column not in features:
        raise KeyError(f"label engine override {override!r} needs feature {column!r}")
    return features[column]
