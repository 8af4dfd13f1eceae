"""Why a model gave a score: per-feature contributions in log-odds, always per ORIGINAL feature (the
one-hot or ordinal columns of a feature summed back), with a base value such that
`base_value + sum(contributions) == the model's log-odds for the row`.

- Trees (the HistGradientBoosting pipeline compiled.py compiles): exact path-dependent TreeSHAP
  (shap's `tree_path_dependent` values: an absent feature follows the training cover of each
  split) over the compiled trees. shap's own TreeExplainer reads HGB's categorical splits as
  numeric thresholds, in the trees' column order (categoricals first): its values do not add up to
  these pipelines' output. Per leaf with d features on its path, the Shapley values of its product
  game are tabulated for all 2^d ways a row can satisfy them (each an integral of a polynomial,
  exact by Gauss-Legendre); a row then costs one table lookup per leaf (Fast TreeSHAP v2's idea),
  in a loop compiled by numba (a project dependency), else in numpy.
- Linear models (a logistic regression after a ColumnTransformer): exact `coef * (z - z_ref)` per
  transformed column; the reference is each numeric column's training mean (the imputer's
  statistics) and an even share of each known category of a one-hot block.

Explainers are built lazily, once per loaded model version (`explainer_for`), never on the predict
path; nothing heavy is imported at import time.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from mlops_assets.serving.compiled import CompiledModel

TREE_METHOD = "tree_shap_path_dependent"
LINEAR_METHOD = "linear_exact"
CHUNK_ROWS = 1024  # rows per TreeSHAP pass (the numpy one holds rows x splits arrays)


class NoExplainer(NotImplementedError):
    """The estimator is neither shape this module explains (answered as a 501 by the server)."""


@dataclass(frozen=True)
class Explanation:
    """Contributions (rows x features, log-odds) of `features`, and the shared base value."""

    method: str
    features: list[str]
    base_value: float
    contributions: np.ndarray

    def log_odds(self) -> np.ndarray:
        return self.base_value + self.contributions.sum(axis=1)

    def ranked(self, row: int, k: int | None = None) -> list[tuple[str, float]]:
        """(feature, contribution) of one row, largest absolute contribution first."""
        values = self.contributions[row]
        order = np.argsort(-np.abs(values), kind="stable")[: k if k else None]
        return [(self.features[j], float(values[j])) for j in order]


class TreeShap:
    """Path-dependent TreeSHAP over a compiled HistGradientBoosting pipeline."""

    method = TREE_METHOD

    def __init__(self, pipeline: Any, compiled: CompiledModel):
        self.compiled = compiled
        self.columns = list(compiled.columns)
        clf = pipeline.named_steps["clf"]
        counts = np.concatenate([it[0].nodes for it in clf._predictors])["count"].astype(float)
        paths = _leaf_paths(compiled)
        names = [name for name, _, _ in compiled.layout]
        self._tables(paths, counts, [self.columns.index(n) for n in names])

    def _tables(self, paths: list[tuple[int, list]], counts: np.ndarray, column_of: list[int]):
        c = self.compiled
        self.leaf_value = np.array([c.value[leaf] for leaf, _ in paths])
        used = np.array([len(slots) for _, slots in paths], dtype=np.intp)
        cover = np.ones((len(paths), max(1, int(used.max(initial=0)))))
        # Flat arrays over every split on a leaf's path (leaf by leaf) and every (leaf, slot).
        steps: list[tuple[int, bool, int, int]] = []  # (node, went left, slot bit, leaf)
        slots: list[tuple[int, int, int]] = []  # (leaf, position, input column)
        for i, (_, grouped) in enumerate(paths):
            for d, (feature, splits) in enumerate(grouped):
                slots.append((i, d, column_of[feature]))
                for parent, child, went_left in splits:
                    steps.append((parent, went_left, 1 << d, i))
                    cover[i, d] *= counts[child] / counts[parent]
        self.base_value = float(c.baseline + self.leaf_value @ cover.prod(axis=1))
        self._pattern_tables(used, cover)
        step = np.array(steps, dtype=np.int64).reshape(-1, 4)
        # Rows go left or right only at the nodes some path splits on.
        self._nodes, self._step_node = np.unique(step[:, 0], return_inverse=True)
        self._step_left = step[:, 1].astype(bool)
        self._step_bit = step[:, 2]
        # The leaves with a split, where each one's steps start, and all its bits.
        self._split_leaves, self._leaf_step = np.unique(step[:, 3], return_index=True)
        self._full = (2 ** used[self._split_leaves] - 1).astype(np.int64)
        slot = np.array(slots, dtype=np.intp).reshape(-1, 3)
        # For the compiled kernel: leaf by leaf, where its steps and slots start, slot columns.
        ranks = np.searchsorted(self._split_leaves, slot[:, 0])
        self._kernel_arrays = (
            self._step_node.astype(np.int64),
            self._step_left,
            self._step_bit,
            np.append(self._leaf_step, len(step)).astype(np.int64),
            np.append(np.searchsorted(ranks, np.arange(len(self._split_leaves))), len(slot)),
            self._offset[self._split_leaves].astype(np.int64),
            slot[:, 2].astype(np.int64),
            self._full,
        )
        # Slots in input-column order, so that a row's contributions are one reduceat.
        slot = slot[np.argsort(slot[:, 2], kind="stable")]
        leaf, position = slot[:, 0], slot[:, 1]
        self._slot_rank = np.searchsorted(self._split_leaves, leaf)
        self._slot_base = self._offset[leaf] + position
        self._slot_used = used[leaf]
        self._used_columns, self._column_start = np.unique(slot[:, 2], return_index=True)

    def _pattern_tables(self, used: np.ndarray, cover: np.ndarray) -> None:
        """Per leaf with d features on its path, its d contributions for each of the 2^d ways a
        row can satisfy them: a row then costs a lookup per leaf (Fast TreeSHAP v2's idea)."""
        sizes = (2**used) * used
        self._offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        table = np.zeros(int(sizes.sum()))
        for d in np.unique(used[used > 0]):
            leaves = np.flatnonzero(used == d)
            patterns = (np.arange(2**d)[:, None] >> np.arange(d)) & 1  # (2^d, d)
            p = np.broadcast_to(patterns, (len(leaves), 2**d, d)).astype(float)
            phi = _shapley(p, cover[leaves, None, :d]) * self.leaf_value[leaves, None, None]
            where = self._offset[leaves, None] + np.arange(2**d * d)
            table[where] = phi.reshape(len(leaves), -1)
        self._table = table

    def explain_rows(self, rows: list[dict[str, Any]]) -> Explanation:
        return self.explain_matrix(self.compiled.encode(rows))

    def explain_frame(self, frame: pd.DataFrame) -> Explanation:
        return self.explain_matrix(encode_frame(self.compiled, frame))

    def explain_matrix(self, X: np.ndarray) -> Explanation:
        """Chunks of rows; many rows (a batch) on every CPU: the compiled loop releases the GIL."""
        from concurrent.futures import ThreadPoolExecutor

        out = np.zeros((len(X), len(self.columns)))
        chunks = [slice(s, s + CHUNK_ROWS) for s in range(0, len(X), CHUNK_ROWS)]

        def run(chunk: slice) -> None:
            out[chunk, self._used_columns] = self._shap(X[chunk])

        if len(self._used_columns) and len(chunks) < 4:
            list(map(run, chunks))
        elif len(self._used_columns):
            with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
                list(pool.map(run, chunks))
        return Explanation(self.method, self.columns, self.base_value, out)

    def _shap(self, X: np.ndarray) -> np.ndarray:
        """Contributions to the used input columns: per row and leaf, the bits of the slots
        (features) whose every split the row takes the leaf's side of index the leaf's table."""
        kernel = _kernel()
        if kernel is None:
            return self._shap_numpy(X)
        out = np.zeros((len(X), len(self.columns)))
        X = np.ascontiguousarray(X, dtype=float)
        kernel(X, *self._split, *self._kernel_arrays, self._table, out)
        return out[:, self._used_columns]

    def _shap_numpy(self, X: np.ndarray) -> np.ndarray:
        failed = self._go_left(X)[:, self._step_node] != self._step_left
        lost = np.bitwise_or.reduceat(np.where(failed, self._step_bit, 0), self._leaf_step, axis=1)
        pattern = self._full ^ lost  # (rows, leaves with a split)
        index = self._slot_base + pattern[:, self._slot_rank] * self._slot_used
        return np.add.reduceat(self._table[index], self._column_start, axis=1)

    @functools.cached_property
    def _split(self) -> tuple[np.ndarray, ...]:
        """Per split node (`self._nodes`): feature, threshold, where missing values go, whether
        categorical and its go-left table by category code (last column: missing/unknown)."""
        c, nodes = self.compiled, self._nodes
        table = c.categorical_left[nodes] if c.n_codes else np.ones((len(nodes), 1), dtype=bool)
        return (
            c.feature[nodes].astype(np.int64),
            c.threshold[nodes].astype(float),
            c.missing_left[nodes],
            c.is_categorical[nodes] & (c.n_codes > 0),
            np.ascontiguousarray(table),
        )

    def _go_left(self, X: np.ndarray) -> np.ndarray:
        """Per row and split node (`self._nodes`), whether the row goes left."""
        feature, threshold, missing_left, categorical, table = self._split
        value = X[:, feature]
        go = np.where(np.isnan(value), missing_left, value <= threshold)
        where = np.flatnonzero(categorical)
        if len(where):
            v, n_codes = value[:, where], table.shape[1] - 1
            code = np.where((v >= 0) & (v < n_codes), v, n_codes).astype(np.intp)  # NaN: last
            go[:, where] = table[where, code]
        return go


@functools.cache
def _kernel() -> Any:
    """`_shap`'s loops compiled with numba, or None (numpy does it)."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=True, nogil=True)
    def kernel(X, feature, threshold, missing_left, categorical, table, step_node, step_left,
               step_bit, step_start, slot_start, offset, column, full, values, out):  # fmt: skip
        n_codes, rows = table.shape[1] - 1, X.shape[0]
        go = np.empty((len(feature), rows), dtype=np.bool_)  # node-major: rows side by side
        for k in range(len(feature)):
            for r in range(rows):
                v = X[r, feature[k]]
                if categorical[k]:
                    code = int(v) if v >= 0 and v < n_codes else n_codes  # NaN: last column
                    go[k, r] = table[k, code]
                elif np.isnan(v):
                    go[k, r] = missing_left[k]
                else:
                    go[k, r] = v <= threshold[k]
        # Leaf by leaf over all rows: the leaf's table stays in cache.
        lost = np.empty(rows, dtype=np.int64)
        for leaf in range(len(full)):
            lost[:] = 0
            for s in range(step_start[leaf], step_start[leaf + 1]):
                node, left, bit = step_node[s], step_left[s], step_bit[s]
                for r in range(rows):
                    if go[node, r] != left:
                        lost[r] |= bit
            used = slot_start[leaf + 1] - slot_start[leaf]
            for r in range(rows):
                base = offset[leaf] + (full[leaf] ^ lost[r]) * used
                for d in range(used):
                    out[r, column[slot_start[leaf] + d]] += values[base + d]

    return kernel


def _shapley(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Shapley values of the product games v(S) = prod_{i in S} p_i * prod_{i not in S} q_i (one
    per leaf and satisfaction pattern, over the last axis): (p_i - q_i) times the integral over
    u in [0, 1] of prod_{j != i} (q_j + (p_j - q_j) u), a polynomial of degree < d integrated
    exactly by Gauss-Legendre; q > 0 (training cover), so no factor is 0."""
    d = p.shape[-1]
    x, w = np.polynomial.legendre.leggauss(max(1, math.ceil(d / 2)))
    weight = np.zeros(np.broadcast_shapes(p.shape, q.shape))
    for u, wu in zip((x + 1) / 2, w / 2, strict=True):
        factors = q + (p - q) * u
        weight += wu * factors.prod(axis=-1, keepdims=True) / factors
    return (p - q) * weight


def _leaf_paths(c: CompiledModel) -> list[tuple[int, list]]:
    """Per leaf of every tree: (leaf node, [(feature, [(parent, child, went_left), ...]), ...]),
    the splits on its path grouped by feature in first-seen order."""
    paths = []
    for root in c.roots:
        stack: list[tuple[int, list]] = [(int(root), [])]
        while stack:
            node, steps = stack.pop()
            if c.is_leaf[node]:
                grouped: dict[int, list] = {}
                for parent, child, went_left in steps:
                    grouped.setdefault(int(c.feature[parent]), []).append(
                        (parent, child, went_left)
                    )
                paths.append((node, list(grouped.items())))
                continue
            left, right = int(c.left[node]), int(c.right[node])
            stack.append((left, [*steps, (node, left, True)]))
            stack.append((right, [*steps, (node, right, False)]))
    return paths


def encode_frame(c: CompiledModel, frame: pd.DataFrame) -> np.ndarray:
    """`CompiledModel.encode` for a whole frame, column by column."""
    import pandas as pd

    X = np.empty((len(frame), len(c.layout)))
    for j, (name, codes, unknown) in enumerate(c.layout):
        column = frame[name]
        if codes is None:
            X[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        else:
            X[:, j] = column.map(codes).astype(float).fillna(unknown).to_numpy()
    return X


class LinearExplainer:
    """Exact contributions of a logistic regression after a ColumnTransformer."""

    method = LINEAR_METHOD

    def __init__(self, pipeline: Any):
        pre, clf = pipeline.named_steps["pre"], pipeline.named_steps["clf"]
        self.pre = pre
        self.columns = [str(c) for c in pipeline.feature_names_in_]
        self.coef = np.ravel(clf.coef_)
        owner, reference = _linear_layout(pre, self.columns)
        self._scatter = np.zeros((len(owner), len(self.columns)))
        self._scatter[np.arange(len(owner)), owner] = 1.0
        self.reference = reference
        self.base_value = float(np.ravel(clf.intercept_)[0] + self.coef @ reference)

    def explain_rows(self, rows: list[dict[str, Any]]) -> Explanation:
        import pandas as pd

        return self.explain_frame(pd.DataFrame(rows, columns=self.columns))

    def explain_frame(self, frame: pd.DataFrame) -> Explanation:
        z = self.pre.transform(frame[self.columns])
        z = z.toarray() if hasattr(z, "toarray") else np.asarray(z, dtype=float)
        contributions = ((z - self.reference) * self.coef) @ self._scatter
        return Explanation(self.method, self.columns, self.base_value, contributions)


def _linear_layout(pre: Any, columns: list[str]) -> tuple[list[int], np.ndarray]:
    """Per transformed column: the input column it comes from, and its reference value."""
    import pandas as pd
    from sklearn.preprocessing import OneHotEncoder

    width = sum(s.stop - s.start for s in pre.output_indices_.values())
    owner, reference = [0] * width, np.zeros(width)
    for name, transformer, inputs in pre.transformers_:
        out = pre.output_indices_[name]
        if name == "remainder" or out.stop == out.start:
            continue
        inputs = list(inputs)
        if isinstance(transformer, OneHotEncoder):
            if transformer.drop_idx_ is not None or getattr(
                transformer, "_infrequent_enabled", False
            ):
                raise NoExplainer("one-hot encoders with dropped or infrequent categories")
            position = out.start
            for column, categories in zip(inputs, transformer.categories_, strict=True):
                for _ in categories:
                    owner[position] = columns.index(column)
                    reference[position] = 1.0 / len(categories)
                    position += 1
            continue
        names = [str(n) for n in transformer.get_feature_names_out(inputs)]
        # A numeric block's reference: its transform of a missing value (the imputer's mean).
        empty = pd.DataFrame({c: [np.nan] for c in inputs}).astype(float)
        ref = np.asarray(transformer.transform(empty), dtype=float).ravel()
        if len(names) != out.stop - out.start or not np.all(np.isfinite(ref)):
            raise NoExplainer(f"transformer {name!r} cannot be mapped back to its inputs")
        for k, column in enumerate(names):
            owner[out.start + k] = columns.index(column)
            reference[out.start + k] = ref[k]
    return owner, reference


_LOCK = threading.Lock()
_CACHE: dict[int, tuple[Any, Any]] = {}  # id(estimator) -> (estimator, explainer)


def cached_explainer(estimator: Any) -> TreeShap | LinearExplainer | None:
    """The estimator's explainer if already built (no lock: a dict read)."""
    hit = _CACHE.get(id(estimator))
    return hit[1] if hit is not None and hit[0] is estimator else None


def explainer_for(
    estimator: Any, compiled: CompiledModel | None = None
) -> TreeShap | LinearExplainer:
    """The estimator's explainer, built on first use and kept while the estimator is served."""
    with _LOCK:
        hit = _CACHE.get(id(estimator))
        if hit is not None and hit[0] is estimator:
            return hit[1]
        explainer = _build(estimator, compiled)
        if len(_CACHE) >= 16:  # old versions: a server holds a few arms at a time
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[id(estimator)] = (estimator, explainer)
        return explainer


def _build(estimator: Any, compiled: CompiledModel | None) -> TreeShap | LinearExplainer:
    from sklearn.linear_model import LogisticRegression

    from mlops_assets.serving.compiled import CompiledModel

    compiled = compiled or CompiledModel.compile(estimator)
    if compiled is not None:
        return TreeShap(estimator, compiled)
    steps = getattr(estimator, "named_steps", {})
    clf = steps.get("clf")
    if isinstance(clf, LogisticRegression) and "pre" in steps and len(clf.classes_) == 2:
        return LinearExplainer(estimator)
    raise NoExplainer(f"no explainer for {type(steps.get('clf', estimator)).__name__}")
