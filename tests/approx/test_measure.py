"""The measure against brute force on tiny hand-made cases: precision at k and recall of pairs
averaged over every tie-breaking order, ROC AUC over every (positive, negative) couple, the
reference sets by loops over examples and pairs, and the frontier by pairwise comparison."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from longtail.approx.measure import AGREEMENT_COLUMNS, Reference, agreement, frontier, pair_recall_at_k
from longtail.approx.result import InfluenceEstimate, MemorizationEstimate


def _mean_over_tie_orders(score: np.ndarray, hit: np.ndarray, k: int) -> float:
    """Hits among the first k of a ranking, averaged over every order that the ties allow."""
    totals = []
    for order in itertools.permutations(range(len(score))):
        ranked = np.asarray(order)
        if np.all(np.diff(score[ranked]) <= 0):  # a descending order, ties in any order
            totals.append(hit[ranked[:k]].sum())
    return float(np.mean(totals))


def _auc_by_couples(positive: np.ndarray, score: np.ndarray) -> float:
    pairs = [(p, n) for p in score[positive] for n in score[~positive]]
    return float(np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs]))


def test_pair_recall_equals_the_average_over_tie_breaking_orders() -> None:
    listed = np.array([11, 12, 13, 14, 15, 16, 17])
    score = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.1])
    reference = np.array([12, 16, 40])  # 40: a pair the method does not list, never found
    hit = np.isin(listed, reference)
    for k in range(1, 10):
        expected = _mean_over_tie_orders(score, hit, min(k, len(listed))) / len(reference)
        assert pair_recall_at_k(reference, listed, score, k) == pytest.approx(expected), k
    assert math.isnan(pair_recall_at_k(np.array([], np.int64), listed, score, 3))
    assert pair_recall_at_k(reference, np.array([], np.int64), np.array([]), 3) == 0
    with pytest.raises(ValueError, match="more than once"):
        pair_recall_at_k(reference, np.array([1, 1]), np.array([0.1, 0.2]), 1)


def _reference_by_loops(masks, train_correct, test_correct, labels, mem_cut, infl_cut):
    def contrast(inside: np.ndarray, values: np.ndarray) -> float:
        if inside.all() or not inside.any():
            return np.nan
        return values[inside].mean() - values[~inside].mean()

    mem = np.array([contrast(masks[:, i], train_correct[:, i]) for i in range(masks.shape[1])])
    memorized = np.nan_to_num(mem, nan=-1) >= mem_cut
    pairs = [
        (i, z)
        for i in range(masks.shape[1])
        for z in range(test_correct.shape[1])
        if labels[0][i] == labels[1][z] and memorized[i] and contrast(masks[:, i], test_correct[:, z]) >= infl_cut
    ]
    return mem, memorized, sorted(pairs)


def test_the_reference_sets_equal_loops_over_examples_and_pairs() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((30, 40)) < 0.6
    train_correct = rng.random((30, 40)) < np.where(masks, 0.9, rng.random(40))
    test_correct = rng.random((30, 12)) < 0.5
    test_correct[:, :4] = masks[:, :4] & (rng.random((30, 4)) < 0.95)  # test examples 0-3 lean on training 0-3
    labels = (rng.integers(0, 2, 40), rng.integers(0, 2, 12))
    labels[0][:4], labels[1][:4] = 0, 0
    reference = Reference.from_models(masks, train_correct, test_correct, labels, 0.25, 0.15)
    mem, memorized, pairs = _reference_by_loops(masks, train_correct, test_correct, labels, 0.25, 0.15)
    np.testing.assert_allclose(reference.mem, mem)
    np.testing.assert_array_equal(reference.memorized, memorized)
    assert sorted(map(tuple, reference.pairs.tolist())) == pairs and len(pairs) >= 4


def test_agreement_of_a_hand_made_case() -> None:
    mem = np.array([0.9, 0.5, 0.3, 0.1, 0.0, np.nan])
    reference = Reference(mem, np.nan_to_num(mem, nan=-1) >= 0.25, np.array([[0, 1], [1, 2]]), n_test=3)
    score = np.array([0.8, 0.1, 0.4, 0.4, np.nan, 0.0])  # example 4 unscored: ranks last
    pairs = pd.DataFrame({"train_index": [0, 1, 2, 0], "test_index": [1, 2, 2, 0], "score": [0.3, 0.1, 0.1, 0.05]})
    table = agreement(
        reference,
        [MemorizationEstimate("m-5", score, 5.0, 1.5), MemorizationEstimate("proxy", score, 2.0, 0.5)],
        [InfluenceEstimate("m-5", pairs, 5.0, 2.5)],
        estimates_mem={"m-5"},
    )
    assert list(table.columns) == AGREEMENT_COLUMNS
    assert table[["method", "target"]].values.tolist() == [["m-5", "memorization"], ["proxy", "memorization"], ["m-5", "influence"]]
    first = table.iloc[0]
    positive = reference.memorized
    assert first["precision_at_r_mem"] == pytest.approx(_mean_over_tie_orders(np.nan_to_num(score, nan=-1), positive, 3) / 3)
    assert first["roc_auc"] == pytest.approx(_auc_by_couples(positive, np.nan_to_num(score, nan=-1)))
    assert first["mae"] == pytest.approx(np.mean([0.1, 0.4, 0.1, 0.3]))  # examples 4 and 5 undefined on one side
    assert first["defined"] == pytest.approx(5 / 6)
    assert math.isnan(table.iloc[1]["mae"])  # a proxy does not estimate mem
    influence = table.iloc[2]
    assert influence["pair_recall_at_r_pairs"] == pytest.approx((1 + 0.5) / 2)  # (0,1) first; (1,2) ties with (2,2)
    assert influence["pair_recall_at_10_r_pairs"] == 1.0
    assert math.isnan(influence["precision_at_r_mem"]) and influence["cost_models"] == 5.0 and influence["seconds"] == 2.5
    assert table["r_mem"].eq(3).all() and table["r_pairs"].eq(2).all()


def test_a_method_scoring_other_examples_is_refused() -> None:
    reference = Reference(np.zeros(3), np.zeros(3, bool), np.empty((0, 2), np.int64), n_test=1)
    with pytest.raises(ValueError, match="scores 2 examples; the reference has 3"):
        agreement(reference, [MemorizationEstimate("x", np.zeros(2), 1.0, 1.0)], [], estimates_mem=())


def test_the_frontier_equals_pairwise_domination() -> None:
    rng = np.random.default_rng(1)
    costs, values = rng.choice([1.0, 2.0, 5.0, 10.0], 30), rng.choice([0.1, 0.5, 0.7, np.nan], 30)
    expected = [
        np.isfinite(values[i])
        and not any(
            np.isfinite(values[j]) and costs[j] <= costs[i] and values[j] >= values[i] and (costs[j] < costs[i] or values[j] > values[i])
            for j in range(30)
        )
        for i in range(30)
    ]
    np.testing.assert_array_equal(frontier(costs, values), expected)
    assert frontier(np.array([1.0, 1.0]), np.array([0.5, 0.5])).tolist() == [True, True]  # equal points both stay
