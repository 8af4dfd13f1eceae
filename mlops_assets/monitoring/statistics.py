"""Distribution tests: the two-sample Kolmogorov-Smirnov test and the population stability index."""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-4  # PSI floor for empty bins (the usual convention)


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test, NaNs dropped."""
    from scipy.stats import ks_2samp

    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan"), float("nan")
    result = ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI over the reference's quantile bins (ties collapse bins; missing values get a bin)."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    finite = ref[np.isfinite(ref)]
    if len(finite) == 0 or len(cur) == 0:
        return float("nan")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_bins = np.where(np.isfinite(ref), np.searchsorted(edges, ref, side="right"), -1)
    cur_bins = np.where(np.isfinite(cur), np.searchsorted(edges, cur, side="right"), -1)
    return _psi(pd.Series(ref_bins), pd.Series(cur_bins))


def psi_categorical(reference: pd.Series, current: pd.Series) -> float:
    return _psi(reference.fillna("<null>").astype(str), current.fillna("<null>").astype(str))


def _psi(reference: pd.Series, current: pd.Series) -> float:
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    p = reference.value_counts(normalize=True)
    q = current.value_counts(normalize=True)
    keys = p.index.union(q.index)
    p = p.reindex(keys, fill_value=0).clip(lower=EPS).to_numpy()
    q = q.reindex(keys, fill_value=0).clip(lower=EPS).to_numpy()
    return float(np.sum((q - p) * np.log(q / p)))


def _finite(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]
