"""Influence of training examples on test examples: a blockwise scan of ``masks.T @ test_correct``.

The scan visits training examples block by block (memory bounded by ``max_block_mb`` at any
n_train) and keeps only what is asked for: the pairs at or above a threshold and/or the k
most influential training examples of each test example. A test example that every model
gets right (or every model gets wrong) has influence exactly 0 from every training example
and no test can find any: such constant columns are skipped. With ``labels`` only pairs of
the same class are scanned, as in the paper's released influence (one matrix per class).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd

from longtail.estimate.contrast import (
    DEFAULT_BLOCK_MB,
    MB,
    check_block_mb,
    check_masks,
    check_scores,
    check_top_k,
    contrast,
    counts,
    means,
    spans,
)
from longtail.estimate.evidence import fisher_greater, q_values

# float32 holds every integer count exactly up to 2**24 models.
_FLOAT32_EXACT_COUNT = 2**24
Labels = tuple[np.ndarray, np.ndarray]


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
        return cls(*counts(masks), test_correct.sum(axis=0, dtype=np.float64))


def _scan(masks: np.ndarray, scores: np.ndarray, design: _Design, max_block_mb: float) -> Iterator[_Block]:
    """Yield the influence matrix of ``masks``' columns on ``scores``' columns block by block.

    Counts are exact in float32 for bool inputs; soft (float) inputs use float64 products,
    since float32 sums of 2000 probabilities drift by ~1e-6.
    """
    n_models, n_train = masks.shape
    n_test = scores.shape[1]
    exact32 = scores.dtype == bool and n_models < _FLOAT32_EXACT_COUNT
    dtype = np.dtype(np.float32 if exact32 else np.float64)
    scores = scores.astype(dtype)
    total, n_in, n_out = design.total[:, None], design.n_in, design.n_out

    # per training example: in_sum + infl + scratch over n_test, 3 bool temporaries, its mask column
    per_row = n_test * (dtype.itemsize + 8 + 8 + 3) + n_models * dtype.itemsize
    size = int(min(max(1, max_block_mb * MB // max(per_row, 1)), max(n_train, 1)))
    buffers = [np.empty(n_test * size, dtype), np.empty(n_test * size), np.empty(n_test * size)]

    for rows in spans(n_train, size):
        shape = (n_test, rows.stop - rows.start)
        in_sum, infl, scratch = (b[: shape[0] * shape[1]].reshape(shape) for b in buffers)
        np.matmul(scores.T, masks[:, rows].astype(dtype), out=in_sum)
        p_in, p_out = means(in_sum, total, n_in[rows], n_out[rows], out=(infl, scratch))
        np.subtract(p_in, p_out, out=infl)
        yield _Block(rows, in_sum, infl, scratch)


def influence_matrix(
    masks: np.ndarray,
    test_correct: np.ndarray,
    *,
    out: np.ndarray | None = None,
    max_block_mb: float = DEFAULT_BLOCK_MB,
) -> np.ndarray:
    """Full ``(n_train, n_test)`` influence matrix (NaN rows where undefined).

    ``out`` (any float dtype, e.g. a float16 ``np.lib.format.open_memmap``) is
    filled block by block, so the matrix need not fit in memory.
    """
    masks = check_masks(masks)
    test_correct = check_scores("test_correct", test_correct, masks.shape[0], None)
    check_block_mb(max_block_mb)
    shape = (masks.shape[1], test_correct.shape[1])
    if out is None:
        out = np.empty(shape)
    elif out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; expected (n_train, n_test) = {shape}")
    for block in _scan(masks, test_correct, _Design.of(masks, test_correct), max_block_mb):
        out[block.rows] = block.infl.T
    return out


# ----------------------------------------------------------------------------- pair selection


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

    def mapped(self, train_ids: np.ndarray, test_ids: np.ndarray) -> _Pairs:
        """The same pairs with group-local indices replaced by global ones."""
        return _Pairs(test_ids[self.test], train_ids[self.train], self.in_sum)

    def unique(self, n_test: int) -> _Pairs:
        return self.take(np.unique(self.train * max(n_test, 1) + self.test, return_index=True)[1])


def _top_k_candidates(block: _Block, k: int) -> np.ndarray:
    """Mask of the block's k largest positive entries of each test row, ties going to the
    lower train index: exactly min(k, #positive) entries per row."""
    infl = block.infl
    positive = infl > 0  # NaN compares False
    if infl.shape[1] <= k:
        return positive
    neg = np.negative(infl, out=block.scratch)
    neg.partition(k - 1, axis=1)  # NaN sorts last, i.e. is never among the k largest
    kth = -neg[:, k - 1 : k].copy()
    kth[np.isnan(kth)] = -np.inf  # fewer than k defined: keep every positive one
    above = infl > kth
    tied = infl == kth
    need = k - np.count_nonzero(above, axis=1, keepdims=True)
    rank = np.cumsum(tied, axis=1, out=block.scratch)  # the scratch is free again
    return positive & (above | (tied & (rank <= need)))


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
    """Accumulates, over the blocks of one group, the threshold hits, the running top-k and
    the pairs whose p-values enter the false-discovery count (``screen``)."""

    def __init__(self, threshold: float | None, top_k: int | None, design: _Design):
        self.threshold, self.top_k, self.design = threshold, top_k, design
        self.screen = None if threshold is None else threshold / 2
        self.hits: list[_Pairs] = []
        self.screened: list[_Pairs] = []
        self.best = _Pairs.empty()

    def add(self, block: _Block) -> None:
        if self.threshold is not None:
            self.hits.append(_Pairs.where(block, block.infl >= self.threshold))
            self.screened.append(_Pairs.where(block, block.infl >= self.screen))
        if self.top_k is not None:
            candidates = _Pairs.where(block, _top_k_candidates(block, self.top_k))
            merged = _Pairs.concat([self.best, candidates])
            design = self.design
            p_in, p_out = means(merged.in_sum, design.total[merged.test], design.n_in[merged.train], design.n_out[merged.train])
            self.best = merged.take(_keep_top_k(merged, p_in - p_out, self.top_k))

    def result(self) -> tuple[_Pairs, _Pairs]:
        """(the selected pairs, the pairs tested with a p-value computed)."""
        n_test = self.design.total.size
        selected = _Pairs.concat([*self.hits, self.best]).unique(n_test)
        return selected, _Pairs.concat([*self.screened, self.best]).unique(n_test)


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and (not isinstance(threshold, Real) or not 0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must be a number in (0, 1] or None; got {threshold!r}")


def _groups(
    n_train: int, n_test: int, varies: np.ndarray, labels: Labels | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) scanned together: every training example against every
    non-constant test example, or class by class with ``labels``."""
    tests = np.flatnonzero(varies)
    if labels is None:
        yield np.arange(n_train), tests
        return
    train_labels, test_labels = (np.asarray(side) for side in labels)
    if train_labels.shape != (n_train,) or test_labels.shape != (n_test,):
        raise ValueError(
            f"labels must be (train labels of shape ({n_train},), test labels of shape ({n_test},)); "
            f"got shapes {train_labels.shape} and {test_labels.shape}"
        )
    for label in np.unique(test_labels[tests]):
        yield np.flatnonzero(train_labels == label), tests[test_labels[tests] == label]


def _varies(scores: np.ndarray, design: _Design, n_models: int) -> np.ndarray:
    """Test columns on which the models differ (the others cannot show any influence)."""
    if scores.dtype == bool:
        return (design.total > 0) & (design.total < n_models)
    return scores.max(axis=0) > scores.min(axis=0)


def influence(
    masks: np.ndarray,
    test_correct: np.ndarray,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    labels: Labels | None = None,
    all_pairs: bool = False,
    max_block_mb: float = DEFAULT_BLOCK_MB,
) -> pd.DataFrame:
    """Influence of training examples on test examples, with the evidence for each.

    Selected pairs: the union of those with ``infl >= threshold`` and of the ``top_k``
    largest positive influences of each test example (exactly k where k are positive, ties to
    the lower train index; NaN never selected), sorted by test index, influence descending,
    train index. ``labels = (train_labels, test_labels)`` restricts everything to pairs of
    one class. ``all_pairs=True`` (neither threshold nor top_k) instead returns every pair,
    ordered by train then test index: n_train × n_test rows, asked for explicitly because at
    MNIST scale that is 6 × 10⁸ rows (``influence_matrix`` fills a memory-mapped matrix).

    Columns: ``train_index, test_index, infl, infl_se, infl_lo, infl_hi, p_value, q_value``
    (95% interval, one-sided exact p-value of H0: infl ≤ 0, Benjamini–Yekutieli q-value; see
    ``longtail.estimate.evidence``). The q-values count every test made: each pair (of the
    same class with ``labels``) with an estimate and a non-constant test column. p-values are
    computed for the selected pairs and every pair with infl ≥ threshold / 2; the other tests
    count as p = 1, which can only make q-values larger. ``attrs["n_tests"]`` holds the count;
    ``q_value`` is NaN where no test is made (an undefined estimate, a constant test column).
    """
    masks = check_masks(masks)
    test_correct = check_scores("test_correct", test_correct, masks.shape[0], None)
    _check_threshold(threshold)
    check_top_k(top_k)
    check_block_mb(max_block_mb)
    if all_pairs != (threshold is None and top_k is None):
        raise ValueError(
            "influence needs threshold and/or top_k, or all_pairs=True (and neither) for every "
            f"n_train x n_test pair ({masks.shape[1]} x {test_correct.shape[1]}); got threshold={threshold!r}, "
            f"top_k={top_k!r}, all_pairs={all_pairs!r}"
        )
    design = _Design.of(masks, test_correct)
    varies = _varies(test_correct, design, masks.shape[0])
    scanned = varies if not all_pairs else np.ones_like(varies)
    selected, tested, n_tests = [], [], 0
    for train_ids, test_ids in _groups(masks.shape[1], test_correct.shape[1], scanned, labels):
        group_design = _Design(design.n_in[train_ids], design.n_out[train_ids], design.total[test_ids])
        group_masks, group_scores = masks[:, train_ids], test_correct[:, test_ids]
        defined = np.count_nonzero((group_design.n_in > 0) & (group_design.n_out > 0))
        if test_correct.dtype == bool:  # soft scores get no test (see evidence.py)
            n_tests += int(defined) * int(np.count_nonzero(varies[test_ids]))
        if all_pairs:
            for block in _scan(group_masks, group_scores, group_design, max_block_mb):
                selected.append(_Pairs.where(block, np.ones_like(block.infl, dtype=bool)).mapped(train_ids, test_ids))
            continue
        selector = _Selector(threshold, top_k, group_design)
        for block in _scan(group_masks, group_scores, group_design, max_block_mb):
            selector.add(block)
        chosen, screened = selector.result()
        selected.append(chosen.mapped(train_ids, test_ids))
        tested.append(screened.mapped(train_ids, test_ids))
    pairs = _Pairs.concat([_Pairs.empty(), *selected])
    stats = _pair_stats(pairs, design, masks, test_correct, max_block_mb)
    if all_pairs:
        counted, counted_p = pairs, stats["p_value"].copy()
    else:
        counted = _Pairs.concat([_Pairs.empty(), *tested])
        counted_p = _p_values(counted, design, test_correct)
    counted_p[~varies[counted.test]] = np.nan  # constant test columns: no test is made
    q = _lookup(pairs, counted, q_values(counted_p, n_tests), test_correct.shape[1])
    order = np.lexsort((pairs.test, pairs.train)) if all_pairs else _order(pairs, stats["diff"])
    result = _frame(pairs, stats, q).iloc[order].reset_index(drop=True)
    result.attrs["n_tests"] = n_tests
    return result


def influence_of(
    masks: np.ndarray, test_correct: np.ndarray, train_index: np.ndarray, test_index: np.ndarray
) -> pd.DataFrame:
    """Influence (with interval and p-value; no q-value, since the family of tests is the
    caller's) of the given (train, test) pairs only: O(pairs × models), for checking a few
    pairs against other models (replication) without scanning every pair."""
    masks = check_masks(masks)
    test_correct = check_scores("test_correct", test_correct, masks.shape[0], None)
    train, test = np.asarray(train_index, dtype=np.int64), np.asarray(test_index, dtype=np.int64)
    if train.shape != test.shape or train.ndim != 1:
        raise ValueError(f"train_index and test_index must be 1-D of one length; got {train.shape} and {test.shape}")
    design = _Design.of(masks, test_correct)
    pairs = _Pairs(test, train, _in_sums(masks, test_correct, train, test, DEFAULT_BLOCK_MB))
    return _frame(pairs, _pair_stats(pairs, design, masks, test_correct, DEFAULT_BLOCK_MB), np.full(train.size, np.nan))


def _lookup(pairs: _Pairs, counted: _Pairs, values: np.ndarray, n_test: int) -> np.ndarray:
    """``values`` (one per pair of ``counted``) at each pair of ``pairs`` (all in ``counted``)."""
    keys = counted.train * max(n_test, 1) + counted.test
    order = np.argsort(keys)
    wanted = pairs.train * max(n_test, 1) + pairs.test
    return values[order[np.searchsorted(keys, wanted, sorter=order)]] if pairs.train.size else np.empty(0)


def _pair_stats(
    pairs: _Pairs, design: _Design, masks: np.ndarray, scores: np.ndarray, max_block_mb: float
) -> dict[str, np.ndarray]:
    n_in, n_out = design.n_in[pairs.train], design.n_out[pairs.train]
    squares = None if scores.dtype == bool else _pair_squares(pairs, masks, scores, max_block_mb)
    return contrast(pairs.in_sum, design.total[pairs.test], n_in, n_out, squares)


def _p_values(pairs: _Pairs, design: _Design, scores: np.ndarray) -> np.ndarray:
    """The ``p_value`` that ``_pair_stats`` gives each pair, without its intervals (or, for soft
    scores, which get no test, the squared sums): only the false-discovery count needs these."""
    if scores.dtype != bool:
        return np.full(pairs.train.size, np.nan)
    n_in, n_out = design.n_in[pairs.train], design.n_out[pairs.train]
    return fisher_greater(in_right=pairs.in_sum, n_in=n_in, total_right=design.total[pairs.test], n_out=n_out)


def _pair_squares(pairs: _Pairs, masks: np.ndarray, scores: np.ndarray, max_block_mb: float) -> tuple[np.ndarray, np.ndarray]:
    """(Σ_in x², Σ x²) of each pair's test scores, for the soft scores' sample variances."""
    squared = np.square(scores, dtype=np.float64)
    return _in_sums(masks, squared, pairs.train, pairs.test, max_block_mb), squared.sum(axis=0)[pairs.test]


def _in_sums(masks: np.ndarray, scores: np.ndarray, train: np.ndarray, test: np.ndarray, max_block_mb: float) -> np.ndarray:
    """Σ over the models that saw ``train[p]`` of ``scores[:, test[p]]``, for each pair p, in
    chunks of pairs that keep the gathered columns within ``max_block_mb``."""
    width = max(1, int(max_block_mb * MB // (masks.shape[0] * 9)))
    in_sum = np.empty(train.size)
    for chunk in spans(train.size, width):
        in_sum[chunk] = np.einsum("mp,mp->p", masks[:, train[chunk]], scores[:, test[chunk]], dtype=np.float64)
    return in_sum


def _frame(pairs: _Pairs, stats: dict[str, np.ndarray], q: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "train_index": pairs.train.astype(np.int64),
            "test_index": pairs.test.astype(np.int64),
            "infl": stats["diff"].astype(np.float64),
            "infl_se": stats["se"],
            "infl_lo": stats["lo"],
            "infl_hi": stats["hi"],
            "p_value": stats["p_value"],
            "q_value": q,
        }
    )
