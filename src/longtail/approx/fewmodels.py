"""Estimators that read more out of a few subset models than right/wrong.

Both contrast, like the exact estimate, the models that trained on a training example (IN)
with those that did not (OUT); the caller passes the first n models of the study.

* **margin** (LiRA's parametric trick, Carlini et al., S&P 2022): per example, a Gaussian is
  fitted to the logit margin (true-class logit minus the largest other one) over its IN
  models and over its OUT models; P(correct) = P(margin > 0) = Φ(μ/σ) in each group, and the
  score is their difference. A margin says how surely a model is right or wrong, which
  right/wrong alone needs many models to resolve. With few models an example is often out of
  just one: that group's σ is then the one pooled over all examples (LiRA's fixed variance).
* **eb** (empirical Bayes): the IN and OUT correctness rates shrunk toward beta priors fitted
  over all examples (``longtail.approx.shrinkage``), the score the difference of the two
  posterior means. Rates resting on few models move most.

For influence the same is done per same-class (train, test) pair: IN/OUT by the training
example, margin or correctness on the test example; the eb priors are fitted per test example
over the training examples of its class. Each class is scored as one (n_train of the class ×
n_test of the class) matrix, in blocks of test examples that bound the memory used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.special import ndtr

from longtail.approx.shrinkage import fit_beta_prior, posterior_mean
from longtail.estimate.contrast import DEFAULT_BLOCK_MB, MB, spans

Labels = tuple[np.ndarray, np.ndarray]
#: (the class's IN masks (n_models, n_train_c), its test columns) -> (n_train_c, n_test_c) scores
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def p_correct(total: np.ndarray, squares: np.ndarray, count: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Φ(μ/σ) of the Gaussian fitted to ``count`` margins with sum ``total`` and sum of squares
    ``squares`` (sample mean and variance, n − 1 in the denominator): the probability that a
    model's margin is positive, i.e. that it is right. A group of one margin takes the variance
    pooled (averaged) along ``axis`` over the groups of two or more, LiRA's "fixed variance"
    for few models; with σ = 0 it is 1, 0 or ½ by the sign of μ; NaN for an empty group."""
    total, squares, count = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (total, squares, count)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = np.where(count >= 2, np.clip((squares - count * mean**2) / (count - 1), 0, None), np.nan)
        pooled = _pooled(variance, axis)
        sigma = np.sqrt(np.where(count >= 2, variance, pooled))
        z = np.where(sigma > 0, mean / sigma, np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)))
    return np.where((count >= 1) & np.isfinite(sigma), ndtr(z), np.nan)


def _pooled(variance: np.ndarray, axis: int | None) -> np.ndarray:
    """The mean of the defined variances along ``axis`` (NaN where none is)."""
    defined = np.isfinite(variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(variance, axis=axis, keepdims=True) / defined.sum(axis=axis, keepdims=True)


def _in_sums(masks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the sum of ``values`` over the models whose mask is set, and over all models
    (float64, in column blocks that keep temporaries near 64 MB)."""
    n_models, n = masks.shape
    inside, total = np.empty(n), np.empty(n)
    for cols in spans(n, max(1, int(64 * MB // (max(n_models, 1) * 8)))):
        block = values[:, cols].astype(np.float64)
        inside[cols] = np.where(masks[:, cols], block, 0.0).sum(axis=0)
        total[cols] = block.sum(axis=0)
    return inside, total


def _counts(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_in = masks.sum(axis=0, dtype=np.float64)
    return n_in, masks.shape[0] - n_in


def margin_memorization(masks: np.ndarray, train_margin: np.ndarray) -> np.ndarray:
    """Φ(μ_in/σ_in) − Φ(μ_out/σ_out) of every training example's own margin (NaN where it is in
    no model, or out of none; a group of one margin takes σ pooled over all examples)."""
    _check_pair(masks, train_margin, "train_margin")
    n_in, n_out = _counts(masks)
    in_sum, total = _in_sums(masks, train_margin)
    in_squares, squares = _in_sums(masks, np.square(train_margin, dtype=np.float64))
    return p_correct(in_sum, in_squares, n_in) - p_correct(total - in_sum, squares - in_squares, n_out)


def eb_memorization(masks: np.ndarray, train_correct: np.ndarray) -> np.ndarray:
    """The posterior IN rate minus the posterior OUT rate of every training example's own
    correctness, each shrunk toward a beta prior fitted over all training examples; defined
    for every example (one in no model gets the prior mean)."""
    _check_pair(masks, train_correct, "train_correct")
    n_in, n_out = _counts(masks)
    in_right, right = _in_sums(masks, train_correct)
    out_right = right - in_right
    inside = posterior_mean(in_right, n_in, fit_beta_prior(in_right, n_in))
    return inside - posterior_mean(out_right, n_out, fit_beta_prior(out_right, n_out))


def margin_influence(
    masks: np.ndarray, test_margin: np.ndarray, labels: Labels, per_test: int, max_block_mb: float = DEFAULT_BLOCK_MB
) -> pd.DataFrame:
    """The ``per_test`` highest margin-n influences of each test example, same-class pairs (a
    group of one margin takes σ pooled over the test example's training examples):
    columns ``train_index``, ``test_index``, ``score``."""
    _check_pair(masks, test_margin, "test_margin", columns=len(labels[1]))

    def score(inside: np.ndarray, margin: np.ndarray) -> np.ndarray:
        margin = margin.astype(np.float64)
        n_in, n_out = _counts(inside)
        in_sum, in_squares = inside.T @ margin, inside.T @ np.square(margin)
        total, squares = margin.sum(axis=0), np.square(margin).sum(axis=0)
        p_in = p_correct(in_sum, in_squares, n_in[:, None], axis=0)  # σ pooled per test example
        return p_in - p_correct(total - in_sum, squares - in_squares, n_out[:, None], axis=0)

    return top_pairs(masks, test_margin, labels, per_test, score, max_block_mb)


def eb_influence(
    masks: np.ndarray, test_correct: np.ndarray, labels: Labels, per_test: int, max_block_mb: float = DEFAULT_BLOCK_MB
) -> pd.DataFrame:
    """The ``per_test`` highest eb-n influences of each test example, same-class pairs (priors
    fitted per test example over its class's training examples): columns ``train_index``, ``test_index``, ``score``."""
    _check_pair(masks, test_correct, "test_correct", columns=len(labels[1]))

    def score(inside: np.ndarray, correct: np.ndarray) -> np.ndarray:
        correct = correct.astype(np.float64)
        n_in, n_out = (n[:, None] for n in _counts(inside))
        in_right = inside.T @ correct
        out_right = correct.sum(axis=0) - in_right
        p_in = posterior_mean(in_right, n_in, fit_beta_prior(in_right, n_in))
        return p_in - posterior_mean(out_right, n_out, fit_beta_prior(out_right, n_out))

    return top_pairs(masks, test_correct, labels, per_test, score, max_block_mb)


def top_pairs(
    masks: np.ndarray, test_values: np.ndarray, labels: Labels, per_test: int, score: PairScorer, max_block_mb: float
) -> pd.DataFrame:
    """Class by class, ``score(IN masks of the class's training examples, test columns of the
    class)`` and each test example's ``per_test`` highest-scored training examples (NaN never,
    ties to the lower training index), sorted by test index, score descending, train index.
    A test example's scores depend on its own column alone, so the columns are scored in
    blocks whose matrix and temporaries stay within ``max_block_mb``."""
    train_labels, test_labels = (np.asarray(side) for side in labels)
    if per_test < 1:
        raise ValueError(f"per_test must be >= 1; got {per_test}")
    parts = [pd.DataFrame({"train_index": np.empty(0, np.int64), "test_index": np.empty(0, np.int64), "score": np.empty(0)})]
    for label in np.unique(test_labels):
        train_ids, test_ids = np.flatnonzero(train_labels == label), np.flatnonzero(test_labels == label)
        if not len(train_ids):
            continue
        inside = masks[:, train_ids].astype(np.float64)
        width = max(1, int(max_block_mb * MB // (8 * 8 * len(train_ids))))  # the matrix and ~7 temporaries
        for block in spans(len(test_ids), width):
            parts.append(_best_rows(score(inside, test_values[:, test_ids[block]]), train_ids, test_ids[block], per_test))
    pairs = pd.concat(parts, ignore_index=True)
    order = np.lexsort((pairs["train_index"], -pairs["score"], pairs["test_index"]))
    return pairs.iloc[order].reset_index(drop=True)


def _best_rows(scores: np.ndarray, train_ids: np.ndarray, test_ids: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` highest finite scores of each column of ``scores`` (ties to the lower row)."""
    rows = np.argsort(-scores, axis=0, kind="stable")[:k]  # NaN sorts last
    cols = np.broadcast_to(np.arange(scores.shape[1]), rows.shape)
    best = scores[rows, cols]
    keep = np.isfinite(best)
    return pd.DataFrame({"train_index": train_ids[rows[keep]], "test_index": test_ids[cols[keep]], "score": best[keep]})


def _check_pair(masks: np.ndarray, values: np.ndarray, name: str, columns: int | None = None) -> None:
    if masks.ndim != 2 or masks.dtype != bool:
        raise ValueError(f"masks must be a 2-D bool array (n_models, n_train); got {masks.dtype} {masks.shape}")
    expected = (masks.shape[0], masks.shape[1] if columns is None else columns)
    if values.shape != expected:
        raise ValueError(f"{name} has shape {values.shape}; expected {expected} (one row per model)")
    if values.dtype != bool and not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values; a model's margins are finite numbers")
