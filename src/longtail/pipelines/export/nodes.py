"""Export: the full influence matrix, as a memory-mappable float16 ``.npy`` and in the layout
of the paper's released estimates. Written block by block: it never has to fit in memory."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from longtail.estimate import influence_matrix
from longtail.io import LazyArray
from longtail.params import ScoringParams, parse


def influence_matrix_file(subset_masks: np.ndarray, test_correct: np.ndarray, scoring: dict[str, Any]) -> LazyArray:
    """The (n_train, n_test) influence matrix in float16 (NaN where undefined), filled into a
    memory-mapped file by ``scoring.max_block_mb`` blocks."""
    params = parse(ScoringParams, scoring, "scoring")
    shape = (subset_masks.shape[1], test_correct.shape[1])

    def fill(out: np.ndarray) -> None:
        influence_matrix(subset_masks, test_correct, out=out, max_block_mb=params.max_block_mb)

    return LazyArray(shape, np.dtype(np.float16), fill)


def published_estimates(memorization_scores: pd.DataFrame, influence_matrix: np.ndarray) -> dict[str, np.ndarray]:
    """``memorization`` (n_train,) and ``influence`` (n_train, n_test), as in the paper's files."""
    return {"memorization": memorization_scores["mem"].to_numpy(np.float64), "influence": influence_matrix}
