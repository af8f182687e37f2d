"""Subsampling estimators of memorization and influence (Feldman & Zhang 2020).

Every estimate here contrasts models trained *with* a training example against
models trained *without* it.  ``masks[t, i]`` says whether model ``t`` saw
training example ``i``; ``correct`` / ``test_correct`` hold each model's 0/1
correctness (or its probability of the true label, the "soft" variant).

* ``mem(i)     = P[correct on i | i in] - P[correct on i | i out]``
* ``infl(i, z) = P[correct on z | i in] - P[correct on z | i out]``

Both reduce to one shared contrast of an *in-sum* (the correctness summed over
the models that saw ``i``) against a column total.  Memorization is the
diagonal case (example ``i``'s own correctness); influence takes all
``n_train x n_test`` in-sums at once as the matrix product
``masks.T @ test_correct``, computed block by block over training examples so
that memory stays bounded at any ``n_train``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd

__all__ = ["memorization", "influence", "influence_matrix"]

_MB = 2**20
_DEFAULT_BLOCK_MB = 256.0
# float32 holds every integer count exactly up to 2**24 models.
_FLOAT32_EXACT_COUNT = 2**24


# --------------------------------------------------------------------------
# validation


def _check_masks(masks: np.ndarray) -> np.ndarray:
    if not isinstance(masks, np.ndarray) or masks.dtype != bool or masks.ndim != 2:
        got = (
            f"dtype {masks.dtype}, shape {masks.shape}"
            if isinstance(masks, np.ndarray)
            else type(masks).__name__
        )
        raise ValueError(
            f"masks must be a 2-D bool array of shape (n_models, n_train); got {got}"
        )
    return masks


def _check_scores(name: str, values: np.ndarray, n_models: int, n_cols: int | None) -> np.ndarray:
    """Validate a correctness array: 2-D, ``n_models`` rows, values in [0, 1].

    Integer arrays (0/1) become bool so they take the exact counting path.
    """
    expected = f"({n_models}, {'n_test' if n_cols is None else n_cols})"
    if not isinstance(values, np.ndarray) or values.ndim != 2:
        got = f"shape {values.shape}" if isinstance(values, np.ndarray) else type(values).__name__
        raise ValueError(f"{name} must be a 2-D array of shape {expected}; got {got}")
    if values.dtype != bool and values.dtype.kind not in "iuf":
        raise ValueError(f"{name} must have a bool, integer or float dtype; got {values.dtype}")
    if values.shape[0] != n_models:
        raise ValueError(
            f"{name} has {values.shape[0]} rows but masks has {n_models} (n_models); "
            f"expected shape {expected}"
        )
    if n_cols is not None and values.shape[1] != n_cols:
        raise ValueError(
            f"{name} has {values.shape[1]} columns but masks has {n_cols} (n_train); "
            f"expected shape {expected}"
        )
    if values.dtype == bool or values.size == 0:
        return values
    lo, hi = values.min(), values.max()  # min/max propagate NaN, without a temporary
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"{name} contains NaN; expected values in [0, 1]")
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} has values in [{lo}, {hi}]; expected values in [0, 1]")
    return values.astype(bool) if values.dtype.kind in "iu" else values


def _check_options(threshold: float | None, top_k: int | None, max_block_mb: float) -> None:
    if threshold is not None and (
        not isinstance(threshold, Real) or not -1.0 <= threshold <= 1.0
    ):
        raise ValueError(f"threshold must be a number in [-1, 1] or None; got {threshold!r}")
    if top_k is not None and (
        not isinstance(top_k, Integral) or isinstance(top_k, bool) or top_k < 1
    ):
        raise ValueError(f"top_k must be an integer >= 1 or None; got {top_k!r}")
    if not isinstance(max_block_mb, Real) or not max_block_mb > 0:
        raise ValueError(f"max_block_mb must be a positive number; got {max_block_mb!r}")


# --------------------------------------------------------------------------
# the shared contrast


def _counts(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_in = np.count_nonzero(masks, axis=0).astype(np.int64)
    return n_in, masks.shape[0] - n_in


def _denominator(n: np.ndarray) -> np.ndarray:
    """Counts as float64 with NaN for 0, so undefined means come out NaN.

    Dividing by NaN rather than 0 also keeps round-off in soft-variant sums
    (``total - in_sum`` = 1e-17 instead of 0) from turning into +-inf.
    """
    return np.where(n > 0, n, np.nan).astype(np.float64)


def _means(
    in_sum: np.ndarray,
    total: np.ndarray,
    n_in: np.ndarray,
    n_out: np.ndarray,
    out: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None),
) -> tuple[np.ndarray, np.ndarray]:
    """``p_in = in_sum / n_in`` and ``p_out = (total - in_sum) / n_out`` in float64.

    The one place the means are formed: the blockwise influence scan (writing
    into ``out`` buffers) and the final per-pair statistics go through it, so
    a selected pair's ``infl`` is bit-identical to the value it was selected on.
    """
    p_in = np.divide(in_sum, _denominator(n_in), out=out[0], dtype=np.float64)
    p_out = np.subtract(total, in_sum, out=out[1], dtype=np.float64)
    p_out /= _denominator(n_out)
    return p_in, p_out


def _contrast(
    in_sum: np.ndarray, total: np.ndarray, n_in: np.ndarray, n_out: np.ndarray
) -> dict[str, np.ndarray]:
    """Difference of means and its standard error (unpooled binomial form)."""
    p_in, p_out = _means(in_sum, total, n_in, n_out)
    var = p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out
    se = np.sqrt(np.maximum(var, 0.0))  # round-off of soft sums can give -1e-17
    return {"diff": p_in - p_out, "se": se, "p_in": p_in, "p_out": p_out}


def _spans(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --------------------------------------------------------------------------
# memorization


def memorization(masks: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Per-training-example memorization estimate.

    Returns one row per training example (RangeIndex) with columns
    ``mem, mem_se, p_in, p_out, n_in, n_out``; ``mem``, ``mem_se`` and the
    undefined mean are NaN where an example is in all models or in none.
    """
    masks = _check_masks(masks)
    correct = _check_scores("correct", correct, masks.shape[0], masks.shape[1])
    n_in, n_out = _counts(masks)
    in_sum, total = _diagonal_sums(masks, correct)
    stats = _contrast(in_sum, total, n_in, n_out)
    return pd.DataFrame(
        {
            "mem": stats["diff"],
            "mem_se": stats["se"],
            "p_in": stats["p_in"],
            "p_out": stats["p_out"],
            "n_in": n_in,
            "n_out": n_out,
        }
    )


def _diagonal_sums(masks: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-sums and totals of each example's own correctness, in column blocks."""
    n_models, n_train = masks.shape
    width = max(1, int(_DEFAULT_BLOCK_MB * _MB / (max(n_models, 1) * 8)))
    in_sum = np.empty(n_train)
    total = np.empty(n_train)
    for cols in _spans(n_train, width):
        seen, score = masks[:, cols], correct[:, cols]
        if score.dtype == bool:  # exact integer counts
            in_sum[cols] = np.count_nonzero(seen & score, axis=0)
            total[cols] = np.count_nonzero(score, axis=0)
        else:
            in_sum[cols] = np.where(seen, score, 0.0).sum(axis=0, dtype=np.float64)
            total[cols] = score.sum(axis=0, dtype=np.float64)
    return in_sum, total


# --------------------------------------------------------------------------
# influence: blockwise scan


@dataclass
class _Block:
    """One block of training examples, laid out (n_test, rows) for per-test scans.

    The arrays are views into buffers reused by the next block.
    """

    rows: slice
    in_sum: np.ndarray
    infl: np.ndarray
    scratch: np.ndarray


@dataclass
class _Design:
    """Per-example counts and per-test totals, computed once per call."""

    n_in: np.ndarray
    n_out: np.ndarray
    total: np.ndarray

    @classmethod
    def of(cls, masks: np.ndarray, test_correct: np.ndarray) -> _Design:
        return cls(*_counts(masks), test_correct.sum(axis=0, dtype=np.float64))


def _scan(
    masks: np.ndarray, test_correct: np.ndarray, design: _Design, max_block_mb: float
) -> Iterator[_Block]:
    """Yield the influence matrix block by block over training examples.

    Counts are exact in float32 for bool inputs; soft (float) inputs use
    float64 products, since float32 sums of 2000 probabilities drift by ~1e-6.
    """
    n_models, n_train = masks.shape
    n_test = test_correct.shape[1]
    exact32 = test_correct.dtype == bool and n_models < _FLOAT32_EXACT_COUNT
    dtype = np.dtype(np.float32 if exact32 else np.float64)
    scores = test_correct.astype(dtype)
    total, n_in, n_out = design.total[:, None], design.n_in, design.n_out

    # per training example: in_sum + infl + scratch over n_test, plus its mask column
    per_row = n_test * (dtype.itemsize + 8 + 8 + 1) + n_models * dtype.itemsize
    size = int(min(max(1, max_block_mb * _MB // max(per_row, 1)), max(n_train, 1)))
    buffers = [np.empty(n_test * size, dtype), np.empty(n_test * size), np.empty(n_test * size)]

    for rows in _spans(n_train, size):
        shape = (n_test, rows.stop - rows.start)
        in_sum, infl, scratch = (b[: shape[0] * shape[1]].reshape(shape) for b in buffers)
        np.matmul(scores.T, masks[:, rows].astype(dtype), out=in_sum)
        p_in, p_out = _means(in_sum, total, n_in[rows], n_out[rows], out=(infl, scratch))
        np.subtract(p_in, p_out, out=infl)
        yield _Block(rows, in_sum, infl, scratch)


def influence_matrix(
    masks: np.ndarray,
    test_correct: np.ndarray,
    *,
    out: np.ndarray | None = None,
    max_block_mb: float = _DEFAULT_BLOCK_MB,
) -> np.ndarray:
    """Full ``(n_train, n_test)`` influence matrix (NaN rows where undefined).

    ``out`` (any float dtype, e.g. a float16 ``np.lib.format.open_memmap``) is
    filled block by block, so the matrix need not fit in memory.
    """
    masks = _check_masks(masks)
    test_correct = _check_scores("test_correct", test_correct, masks.shape[0], None)
    _check_options(None, None, max_block_mb)
    shape = (masks.shape[1], test_correct.shape[1])
    if out is None:
        out = np.empty(shape)
    elif out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; expected (n_train, n_test) = {shape}")
    for block in _scan(masks, test_correct, _Design.of(masks, test_correct), max_block_mb):
        out[block.rows] = block.infl.T
    return out


# --------------------------------------------------------------------------
# influence: pair selection


@dataclass
class _Pairs:
    """A flat set of (test, train) pairs with their in-sums."""

    test: np.ndarray
    train: np.ndarray
    in_sum: np.ndarray

    @classmethod
    def empty(cls) -> _Pairs:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    @classmethod
    def where(cls, block: _Block, keep: np.ndarray) -> _Pairs:
        test, col = np.nonzero(keep)
        return cls(test, col + block.rows.start, block.in_sum[test, col].astype(np.float64))

    @classmethod
    def concat(cls, parts: list[_Pairs]) -> _Pairs:
        fields = ("test", "train", "in_sum")
        return cls(*(np.concatenate([getattr(part, f) for part in parts]) for f in fields))

    def take(self, index: np.ndarray) -> _Pairs:
        return _Pairs(self.test[index], self.train[index], self.in_sum[index])


def _top_k_candidates(block: _Block, k: int) -> np.ndarray:
    """Mask of every block entry at least as large as its test's k-th largest.

    A superset of the block's top k (ties at the k-th value are all kept) so
    that tie-breaking by train index can be done exactly afterwards.
    """
    n_rows = block.infl.shape[1]
    if n_rows <= k:
        return ~np.isnan(block.infl)
    neg = np.negative(block.infl, out=block.scratch)
    neg.partition(k - 1, axis=1)  # NaN sorts last, i.e. is never among the k largest
    kth = -neg[:, k - 1 : k]
    kth[np.isnan(kth)] = -np.inf  # fewer than k defined: keep all defined
    return block.infl >= kth


def _order(pairs: _Pairs, infl: np.ndarray) -> np.ndarray:
    """Sort order: test index, then influence descending, then train index."""
    return np.lexsort((pairs.train, -infl, pairs.test))


def _keep_top_k(pairs: _Pairs, infl: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best pairs per test example (in sorted order)."""
    order = _order(pairs, infl)
    test = pairs.test[order]
    rank = np.arange(test.size) - np.searchsorted(test, test)
    return order[rank < k]


class _Selector:
    """Accumulates threshold hits and running top-k candidates across blocks."""

    def __init__(self, threshold: float | None, top_k: int | None, design: _Design):
        self.threshold, self.top_k, self.design = threshold, top_k, design
        self.hits: list[_Pairs] = []
        self.best = _Pairs.empty()

    def add(self, block: _Block) -> None:
        if self.threshold is not None:
            self.hits.append(_Pairs.where(block, block.infl >= self.threshold))
        if self.top_k is not None:
            candidates = _Pairs.where(block, _top_k_candidates(block, self.top_k))
            merged = _Pairs.concat([self.best, candidates])
            infl = _pair_stats(merged, self.design)["diff"]
            self.best = merged.take(_keep_top_k(merged, infl, self.top_k))

    def result(self) -> _Pairs:
        pairs = _Pairs.concat([*self.hits, self.best])
        key = pairs.train * (self.design.total.size or 1) + pairs.test
        return pairs.take(np.unique(key, return_index=True)[1])


def influence(
    masks: np.ndarray,
    test_correct: np.ndarray,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    max_block_mb: float = _DEFAULT_BLOCK_MB,
) -> pd.DataFrame:
    """Influence of each training example on each test example.

    Without ``threshold`` and ``top_k``: all ``n_train x n_test`` pairs ordered
    by train then test index, NaN where undefined.  Otherwise the union of the
    pairs with ``infl >= threshold`` and the ``top_k`` largest per test example
    (ties to the lower train index; NaN never selected), sorted by test index,
    influence descending, train index.  Columns: ``train_index, test_index,
    infl, infl_se``.  Works in blocks of about ``max_block_mb`` of working set.
    """
    masks = _check_masks(masks)
    test_correct = _check_scores("test_correct", test_correct, masks.shape[0], None)
    _check_options(threshold, top_k, max_block_mb)
    if threshold is None and top_k is None:
        return _all_pairs(masks, test_correct, max_block_mb)

    design = _Design.of(masks, test_correct)
    selector = _Selector(threshold, top_k, design)
    for block in _scan(masks, test_correct, design, max_block_mb):
        selector.add(block)
    pairs = selector.result()
    stats = _pair_stats(pairs, design)
    frame = _frame(pairs.train, pairs.test, stats)
    return frame.iloc[_order(pairs, stats["diff"])].reset_index(drop=True)


def _pair_stats(pairs: _Pairs, design: _Design) -> dict[str, np.ndarray]:
    return _contrast(
        pairs.in_sum, design.total[pairs.test], design.n_in[pairs.train], design.n_out[pairs.train]
    )


def _all_pairs(masks: np.ndarray, test_correct: np.ndarray, max_block_mb: float) -> pd.DataFrame:
    design = _Design.of(masks, test_correct)
    n_test = test_correct.shape[1]
    parts = []
    for block in _scan(masks, test_correct, design, max_block_mb):
        train = np.arange(block.rows.start, block.rows.stop)
        stats = _contrast(
            block.in_sum.T, design.total, design.n_in[train, None], design.n_out[train, None]
        )
        stats = {name: value.ravel() for name, value in stats.items()}
        test = np.tile(np.arange(n_test), train.size)
        parts.append(_frame(np.repeat(train, n_test), test, stats))
    if not parts:  # no training examples
        empty = _Pairs.empty()
        return _frame(empty.train, empty.test, _pair_stats(empty, design))
    return pd.concat(parts, ignore_index=True)


def _frame(train: np.ndarray, test: np.ndarray, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "train_index": train.astype(np.int64),
            "test_index": test.astype(np.int64),
            "infl": stats["diff"].astype(np.float64),
            "infl_se": stats["se"].astype(np.float64),
        }
    )
