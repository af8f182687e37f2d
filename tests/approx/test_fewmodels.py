"""margin-n and eb-n against cases with known answers and against loops written out example by
example, pair by pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from longtail.approx.fewmodels import (
    eb_influence,
    eb_memorization,
    margin_influence,
    margin_memorization,
    p_correct,
    top_pairs,
)


def _gaussian_p(values: np.ndarray, pooled_variance: float = np.nan) -> float:
    """Φ(mean / sample sd) written out with scipy's normal distribution; one value takes the
    pooled variance."""
    if len(values) == 0:
        return np.nan
    sd = values.std(ddof=1) if len(values) >= 2 else np.sqrt(pooled_variance)
    return float(norm.cdf(values.mean() / sd))


def _groups_p(groups: list[np.ndarray]) -> list[float]:
    """``_gaussian_p`` of each group, the variance of the groups of one pooled over the others."""
    pooled = np.mean([g.var(ddof=1) for g in groups if len(g) >= 2])
    return [_gaussian_p(g, pooled) for g in groups]


def _moment_prior(successes: np.ndarray, trials: np.ndarray) -> tuple[float, float]:
    """The beta prior by moments (longtail.approx.shrinkage's formula), one loop of plain floats."""
    rates = [s / n for s, n in zip(successes, trials) if n > 0]
    inverse = [1 / n for n in trials if n > 0]
    mean = sum(rates) / len(rates)
    spread = sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)
    noise = sum(inverse) / len(inverse)
    rho = (spread / (mean * (1 - mean)) - noise) / (1 - noise) if 0 < mean < 1 else 0.0
    rho = min(max(rho, 1e-6), 1 - 1e-6)
    strength = 1 / rho - 1
    return mean * strength, (1 - mean) * strength


def _study(n_models: int, n_train: int, n_test: int, seed: int):
    rng = np.random.default_rng(seed)
    masks = rng.random((n_models, n_train)) < 0.7
    return rng, masks


def test_margins_from_known_gaussians_give_the_difference_of_their_phi() -> None:
    rng, masks = _study(4000, 3, 0, 0)
    means, sds = np.array([[2.0, 0.3, -1.0], [-0.5, 0.3, -1.0]]), np.array([[1.0, 0.5, 2.0], [2.0, 0.5, 0.5]])
    margin = np.where(masks, rng.normal(means[0], sds[0], masks.shape), rng.normal(means[1], sds[1], masks.shape))
    expected = norm.cdf(means[0] / sds[0]) - norm.cdf(means[1] / sds[1])  # [0.58, 0, 0.29]
    np.testing.assert_allclose(margin_memorization(masks, margin.astype(np.float32)), expected, atol=0.02)


def test_p_correct_follows_the_written_out_fit_and_its_edge_cases() -> None:
    rng = np.random.default_rng(1)
    groups = [rng.normal(rng.normal(), 2, size) for size in (2, 3, 7, 30)]
    totals = [g.sum() for g in groups]
    squares = [(g**2).sum() for g in groups]
    np.testing.assert_allclose(p_correct(totals, squares, [len(g) for g in groups]), [_gaussian_p(g) for g in groups])
    # one margin: the variance pooled over the groups of two or more (LiRA's fixed variance)
    pooled = np.mean([g.var(ddof=1) for g in groups])
    one = p_correct([*totals, 0.7], [*squares, 0.49], [*(len(g) for g in groups), 1])
    assert one[-1] == pytest.approx(norm.cdf(0.7 / np.sqrt(pooled)))
    # identical margins (σ = 0): by the sign of the mean; no margin, or none to pool: undefined
    assert p_correct([6.0, -6.0, 0.0], [12.0, 12.0, 0.0], [3, 3, 3]).tolist() == [1.0, 0.0, 0.5]
    assert np.isnan(p_correct([1.0, 0.0], [1.0, 0.0], [1, 0])).all()


def test_margin_memorization_equals_the_loop_over_examples() -> None:
    rng, masks = _study(9, 40, 0, 2)
    masks[:, 0], masks[:8, 1] = True, False  # example 0 in every model, example 1 in one
    margin = rng.normal(0.5, 2, masks.shape).astype(np.float32)
    values = margin.astype(np.float64)
    p_in = _groups_p([values[masks[:, i], i] for i in range(40)])
    p_out = _groups_p([values[~masks[:, i], i] for i in range(40)])
    expected = np.subtract(p_in, p_out)
    np.testing.assert_allclose(margin_memorization(masks, margin), expected, rtol=1e-9, atol=1e-12)
    assert np.isnan(expected[0]) and np.isfinite(expected[1])  # never out: undefined; out of one: pooled σ


def test_eb_memorization_equals_the_loop_over_examples() -> None:
    rng, masks = _study(12, 300, 0, 3)
    hard = rng.random(300) < 0.2
    correct = rng.random(masks.shape) < np.where(hard, np.where(masks, 0.9, 0.2), 0.97)
    masks[:, 5] = True  # never out: its OUT rate is the prior mean
    n_in, n_out = masks.sum(0), (~masks).sum(0)
    s_in, s_out = (masks & correct).sum(0), (~masks & correct).sum(0)
    a_in, b_in = _moment_prior(s_in, n_in)
    a_out, b_out = _moment_prior(s_out, n_out)
    expected = [(s_in[i] + a_in) / (n_in[i] + a_in + b_in) - (s_out[i] + a_out) / (n_out[i] + a_out + b_out) for i in range(300)]
    score = eb_memorization(masks, correct)
    np.testing.assert_allclose(score, expected, rtol=1e-9)
    assert np.isfinite(score).all()
    # the examples memorized by design (IN rate 0.9, OUT rate 0.2) score far above the others
    assert score[hard].mean() > score[~hard].mean() + 0.3


def _pairs_by_loop(masks: np.ndarray, per_pair, labels, per_test: int) -> pd.DataFrame:
    """Each test example's per_test highest same-class pairs, scored one pair at a time."""
    train_labels, test_labels = labels
    rows = []
    for z in range(len(test_labels)):
        same = [i for i in range(len(train_labels)) if train_labels[i] == test_labels[z]]
        scored = [(per_pair(i, z), i) for i in same]
        scored = sorted((s for s in scored if np.isfinite(s[0])), key=lambda s: (-s[0], s[1]))[:per_test]
        rows += [{"train_index": i, "test_index": z, "score": s} for s, i in scored]
    return pd.DataFrame(rows, columns=["train_index", "test_index", "score"])


def _labels(rng: np.random.Generator, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 3, n_train), rng.integers(0, 3, n_test)


def test_margin_influence_equals_the_loop_over_pairs() -> None:
    rng, masks = _study(10, 30, 0, 4)
    masks[:9, 0] = False  # in one model: σ_in pooled
    labels = _labels(rng, 30, 8)
    margin = rng.normal(1, 2, (10, 8)).astype(np.float32)
    values = margin.astype(np.float64)

    def per_pair(i: int, z: int) -> float:
        same = np.flatnonzero(labels[0] == labels[1][z])  # σ pooled over the test example's class-mates
        p_in = _groups_p([values[masks[:, j], z] for j in same])
        p_out = _groups_p([values[~masks[:, j], z] for j in same])
        j = int(np.flatnonzero(same == i)[0])
        return p_in[j] - p_out[j]

    got = margin_influence(masks, margin, labels, per_test=4, max_block_mb=1e-4)  # one test example per block
    pd.testing.assert_frame_equal(got, _pairs_by_loop(masks, per_pair, labels, 4), check_exact=False, rtol=1e-9)
    assert got.groupby("test_index").size().eq(4).all()


def test_eb_influence_equals_the_loop_over_pairs() -> None:
    rng, masks = _study(15, 40, 0, 5)
    labels = _labels(rng, 40, 10)
    correct = rng.random((15, 10)) < 0.6
    correct[:, 0] = True  # a test example every model gets right: every score 0

    def per_pair(i: int, z: int) -> float:
        same = np.flatnonzero(labels[0] == labels[1][z])
        inside = masks[:, same]
        s_in, n_in = (inside & correct[:, [z]]).sum(0), inside.sum(0)
        s_out, n_out = (~inside & correct[:, [z]]).sum(0), (~inside).sum(0)
        a_in, b_in = _moment_prior(s_in, n_in)
        a_out, b_out = _moment_prior(s_out, n_out)
        j = int(np.flatnonzero(same == i)[0])
        return (s_in[j] + a_in) / (n_in[j] + a_in + b_in) - (s_out[j] + a_out) / (n_out[j] + a_out + b_out)

    got = eb_influence(masks, correct, labels, per_test=5)
    pd.testing.assert_frame_equal(got, _pairs_by_loop(masks, per_pair, labels, 5), check_exact=False, rtol=1e-9, atol=1e-12)
    assert np.allclose(got.loc[got["test_index"] == 0, "score"], 0)


def test_top_pairs_breaks_ties_to_the_lower_index_and_never_lists_nan() -> None:
    masks = np.ones((2, 6), dtype=bool)
    labels = (np.array([0, 0, 0, 0, 1, 1]), np.array([0, 1, 2]))
    table = np.array([[0.5, np.nan, 0.5, 0.9], [np.nan, np.nan, 1.0, 2.0]])  # scores of class 0, then class 1

    def score(inside: np.ndarray, column: np.ndarray) -> np.ndarray:
        rows = table[0] if inside.shape[1] == 4 else table[1, 2:]
        return np.repeat(rows[:, None], column.shape[1], axis=1)

    got = top_pairs(masks, np.zeros((2, 3)), labels, 2, score, max_block_mb=1.0)
    assert got.values.tolist() == [[3, 0, 0.9], [0, 0, 0.5], [5, 1, 2.0], [4, 1, 1.0]]  # class 2: no training example
    with pytest.raises(ValueError, match="per_test must be >= 1"):
        top_pairs(masks, np.zeros((2, 3)), labels, 0, score, max_block_mb=1.0)


def test_bad_margins_are_refused_with_their_shape() -> None:
    masks = np.ones((3, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"train_margin has shape \(2, 4\); expected \(3, 4\)"):
        margin_memorization(masks, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        margin_memorization(masks, np.full((3, 4), np.nan))
