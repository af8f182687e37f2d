"""Export: the full influence matrix, as a memory-mappable float16 ``.npy`` and in the layout
of the paper's released estimates (written block by block: it never has to fit in memory), and
the within-class influence in the paper's per-class layout."""

from __future__ import annotations


import numpy as np
import pandas as pd

from longtail.estimate import influence_matrix
from longtail.io import LazyArray
from longtail.params import ScoringParams

from ..scoring.nodes import split_labels


def influence_matrix_file(subset_masks: np.ndarray, test_correct: np.ndarray, scoring: ScoringParams) -> LazyArray:
    """The (n_train, n_test) influence matrix in float16 (NaN where undefined), filled into a
    memory-mapped file by ``scoring.max_block_mb`` blocks."""
    shape = (subset_masks.shape[1], test_correct.shape[1])

    def fill(out: np.ndarray) -> None:
        influence_matrix(subset_masks, test_correct, out=out, max_block_mb=scoring.max_block_mb)

    return LazyArray(shape, np.dtype(np.float16), fill)


def published_estimates(memorization_scores: pd.DataFrame, influence_matrix: np.ndarray) -> dict[str, np.ndarray]:
    """``memorization`` (n_train,) and ``influence`` (n_train, n_test), as in the paper's files."""
    return {"memorization": memorization_scores["mem"].to_numpy(np.float64), "influence": influence_matrix}


def class_influence(
    subset_masks: np.ndarray, test_correct: np.ndarray, examples: pd.DataFrame, scoring: ScoringParams
) -> dict[str, np.ndarray]:
    """Within-class influence in the layout of the paper's ``cifar100_infl_matrix.npz``: for
    each class c, ``infl_matrix_class{c}`` (float32, training × test examples of class c,
    NaN where undefined), indexed by ``tr_classidx_{c}`` and ``tt_classidx_{c}`` (positions in
    the training and test splits). Its size is Σ_c n_train_c · n_test_c, a tenth of the full
    matrix on 10 balanced classes. Examples without a label (−1, published runs that carry
    none) belong to no class and are left out. Each class is computed in ``scoring.max_block_mb``
    blocks."""
    train, test = split_labels(examples)
    arrays: dict[str, np.ndarray] = {}
    known = np.concatenate([train, test])
    for label in np.unique(known[known >= 0]):
        rows, cols = np.flatnonzero(train == label), np.flatnonzero(test == label)
        out = np.empty((rows.size, cols.size), dtype=np.float32)
        influence_matrix(subset_masks[:, rows], test_correct[:, cols], out=out, max_block_mb=scoring.max_block_mb)
        arrays.update({f"infl_matrix_class{label}": out, f"tr_classidx_{label}": rows, f"tt_classidx_{label}": cols})
    return arrays
