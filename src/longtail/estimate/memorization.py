"""Memorization of each training example: its own correctness, in-models against out-models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from longtail.estimate.contrast import DEFAULT_BLOCK_MB, MB, check_masks, check_scores, contrast, counts, spans
from longtail.estimate.evidence import q_values


def memorization(masks: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Per-training-example memorization estimate.

    One row per training example (RangeIndex): ``mem``, its 95% interval ``mem_lo`` …
    ``mem_hi`` and ``mem_se`` (half-width / 1.96), the one-sided exact p-value ``mem_p`` of
    H0: mem ≤ 0 and its Benjamini–Yekutieli q-value ``mem_q`` over all training examples with
    an estimate (see ``longtail.estimate.evidence``), ``p_in``, ``p_out``, ``n_in``, ``n_out``.
    Soft (probability) inputs get a sample-variance interval and no p-value. Everything but
    the defined mean is NaN where an example is in all models or in none.
    """
    masks = check_masks(masks)
    correct = check_scores("correct", correct, masks.shape[0], masks.shape[1])
    n_in, n_out = counts(masks)
    sums = _diagonal_sums(masks, correct)
    squares = None if correct.dtype == bool else _diagonal_sums(masks, np.square(correct, dtype=np.float64))
    stats = contrast(*sums, n_in, n_out, squares)
    return pd.DataFrame(
        {
            "mem": stats["diff"],
            "mem_se": stats["se"],
            "mem_lo": stats["lo"],
            "mem_hi": stats["hi"],
            "mem_p": stats["p_value"],
            "mem_q": q_values(stats["p_value"]),
            "p_in": stats["p_in"],
            "p_out": stats["p_out"],
            "n_in": n_in,
            "n_out": n_out,
        }
    )


def _diagonal_sums(masks: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-sums and totals of each example's own correctness, in column blocks."""
    n_models, n_train = masks.shape
    width = max(1, int(DEFAULT_BLOCK_MB * MB / (max(n_models, 1) * 8)))
    in_sum = np.empty(n_train)
    total = np.empty(n_train)
    for cols in spans(n_train, width):
        seen, score = masks[:, cols], correct[:, cols]
        if score.dtype == bool:  # exact integer counts
            in_sum[cols] = np.count_nonzero(seen & score, axis=0)
            total[cols] = np.count_nonzero(score, axis=0)
        else:
            in_sum[cols] = np.where(seen, score, 0.0).sum(axis=0, dtype=np.float64)
            total[cols] = score.sum(axis=0, dtype=np.float64)
    return in_sum, total
