"""The business-rules layer after the model ("label engine"): scores become risk bands and actions,
with overrides the business owns. Rules come from the model config, not code."""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections.abc import Mapping, Sequence
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


def apply_rules_rows(
    scores: Sequence[float],
    rows: Sequence[Mapping[str, Any]],
    rules: LabelEngineConfig,
    thresholds: Sequence[float],
) -> dict[str, list]:
    """`apply_rules` row by row in plain Python, as lists: for a request's few rows, where numpy's
    per-call cost was most of the layer's time (same answers: tested against `apply_rules`).
    `rows` are feature dicts (a missing feature counts as None)."""
    plan = _plan(rules)
    last = len(plan.order) - 1
    out: dict[str, list] = {"risk_band": [], "prediction": [], "rule": []}
    for score, row, threshold in zip(scores, rows, thresholds, strict=True):
        rank = plan.rank_list[min(max(bisect_right(plan.edge_list, score) - 1, 0), last)]
        reason = "score"
        for name, when, min_values, floor in plan.overrides:
            if (
                rank < floor
                and all(row.get(column) in allowed for column, allowed in when)
                and all(_as_number(row.get(column)) >= low for column, low in min_values)
            ):
                rank, reason = floor, f"override:{name}"
        out["risk_band"].append(plan.names[rank])
        out["prediction"].append(int(score >= threshold))
        out["rule"].append(reason)
    return out


def _as_number(value: Any) -> float:
    """A value as `apply_rules` compares it with a minimum: None and NaN as -inf, infinities as
    the largest finite floats (numpy's nan_to_num)."""
    number = math.nan if value is None else float(value)
    if math.isnan(number):
        return -math.inf
    if math.isinf(number):
        return math.copysign(sys.float_info.max, number)
    return number


@dataclass(frozen=True)
class _Plan:
    """What apply_rules derives from a config, once: band edges in order, each band's rank, the
    band names by rank, and per override its conditions and floor rank; as plain lists for
    apply_rules_rows: the sorted edges and the rank of the band at each."""

    sorted_edges: np.ndarray
    order: np.ndarray
    ranks: np.ndarray
    names: np.ndarray
    overrides: tuple[tuple[str, tuple, tuple, int], ...]
    edge_list: list[float]
    rank_list: list[int]


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
        edge_list=edges[order].tolist(),
        rank_list=[rules.band_rank(bands[i].name) for i in order],
    )
    if len(_PLANS) > 64:  # configs are few; a long-lived process may see reloaded copies
        _PLANS.clear()
    _PLANS[id(rules)] = (rules, plan)
    return plan


def _column(features: Mapping[str, Any], override: str, column: str) -> Any:
    if column not in features:
        raise KeyError(f"label engine override {override!r} needs feature {column!r}")
    return features[column]
