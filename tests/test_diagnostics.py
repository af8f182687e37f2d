"""The diagnostics' statistics against independent references: scikit-learn, scipy, brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from longtail import diagnostics as stats
from longtail.estimate import influence, memorization


def labelled_scores(seed: int, n: int = 40, levels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Random labels with at least one of each class, and scores with many ties."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    positive[:2] = [True, False]
    return positive, rng.integers(0, levels, n) / levels


@pytest.mark.parametrize("seed", range(20))
def test_ranking_statistics_match_scikit_learn(seed: int) -> None:
    positive, score = labelled_scores(seed, n=5 + 3 * seed)
    assert stats.roc_auc(positive, score) == pytest.approx(roc_auc_score(positive, score), abs=1e-12)
    assert stats.average_precision(positive, score) == pytest.approx(average_precision_score(positive, score), abs=1e-12)
    precision, recall = stats.precision_recall(positive, score)
    reference_precision, reference_recall, _ = precision_recall_curve(positive, score)
    np.testing.assert_allclose(precision, reference_precision[:-1][::-1])
    np.testing.assert_allclose(recall, reference_recall[:-1][::-1])


@pytest.mark.parametrize("seed", range(10))
def test_average_ranks_and_spearman_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 6, 50).astype(float), rng.integers(0, 6, 50).astype(float)
    np.testing.assert_allclose(stats.average_ranks(a), rankdata(a))
    a[rng.random(50) < 0.1] = np.nan
    b[rng.random(50) < 0.1] = np.nan
    assert stats.spearman(a, b) == pytest.approx(spearmanr(a, b, nan_policy="omit").statistic, abs=1e-12)


def test_spearman_is_nan_when_undefined() -> None:
    assert math.isnan(stats.spearman(np.ones(5), np.arange(5.0)))
    assert math.isnan(stats.spearman(np.array([1.0, np.nan]), np.array([np.nan, 2.0])))
    assert stats.spearman(np.arange(5.0), -np.arange(5.0) ** 3) == pytest.approx(-1)


def brute_force_precision_at_k(positive: np.ndarray, score: np.ndarray, k: int) -> float:
    """Mean over every order of tie-breaking of the share of positives among the first k."""
    shares = []
    for tie_break in itertools.permutations(range(len(score))):
        top = np.lexsort((np.array(tie_break), -score))[:k]
        shares.append(positive[top].mean())
    return float(np.mean(shares))


@pytest.mark.parametrize("seed", range(6))
def test_precision_at_k_is_the_mean_over_tie_breaks(seed: int) -> None:
    positive, score = labelled_scores(seed, n=7, levels=3)
    for k in range(1, 8):
        assert stats.precision_at_k(positive, score, k) == pytest.approx(brute_force_precision_at_k(positive, score, k))
    assert stats.precision_at_k(positive, score, 100) == pytest.approx(positive.mean())
    with pytest.raises(ValueError, match="k must be >= 1"):
        stats.precision_at_k(positive, score, 0)


def test_a_nan_score_flags_nothing() -> None:
    positive = np.array([True, False, True, False, False])
    score = np.array([0.9, np.nan, np.nan, 0.2, 0.5])
    lowest = np.nan_to_num(score, nan=-1.0)
    assert stats.roc_auc(positive, score) == pytest.approx(roc_auc_score(positive, lowest))
    assert stats.average_precision(positive, score) == pytest.approx(average_precision_score(positive, lowest))
    assert math.isnan(stats.roc_auc(np.zeros(4, bool), np.arange(4.0)))
    assert math.isnan(stats.average_precision(np.zeros(4, bool), np.arange(4.0)))
    with pytest.raises(ValueError, match="labels must be bool"):
        stats.roc_auc(np.array([1, 0]), np.array([0.1, 0.2]))


def test_jaccard() -> None:
    a, b = np.array([1, 5, 7, 9]), np.array([5, 9, 11])
    assert stats.jaccard(a, b) == len({1, 5, 7, 9} & {5, 9, 11}) / len({1, 5, 7, 9} | {5, 9, 11})
    assert stats.jaccard(a, a) == 1.0
    assert math.isnan(stats.jaccard(np.array([], int), np.array([], int)))


def test_split_halves_are_disjoint_equal_and_seeded() -> None:
    first, second = stats.split_halves(np.arange(11), seed=3)
    assert len(first) == len(second) == 5 and not set(first) & set(second)
    np.testing.assert_array_equal(stats.split_halves(np.arange(11), 3)[0], first)
    assert not np.array_equal(stats.split_halves(np.arange(11), 4)[0], first)


@pytest.fixture(scope="module")
def runs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of 40 models over 30 training examples and correctness that leans on them."""
    rng = np.random.default_rng(0)
    masks = rng.random((40, 30)) < 0.7
    correct = rng.random((40, 30)) < 0.4 + 0.5 * masks
    test_correct = rng.random((40, 12)) < 0.5 + 0.3 * masks[:, :12]
    return masks, correct, test_correct


SELECTION = stats.PairSelection(influence_threshold=0.15, memorization_threshold=0.25)


def brute_force_halves(masks, correct, test_correct, models, seed) -> dict[str, float]:
    """The agreement of two halves, from the public estimators and Python sets."""
    halves = stats.split_halves(models, seed)
    mems, pair_sets = [], []
    for half in halves:
        mem = memorization(masks[half], correct[half])["mem"].to_numpy()
        pairs = influence(masks[half], test_correct[half])
        pair_sets.append({
            (train, test) for train, test, infl in pairs[["train_index", "test_index", "infl"]].itertuples(index=False)
            if infl >= 0.15 and mem[int(train)] >= 0.25
        })
        mems.append(mem)
    a, b = pair_sets
    return {
        "spearman_mem": spearmanr(*mems, nan_policy="omit").statistic,
        "pairs_both": len(a & b),
        "jaccard_pairs": len(a & b) / len(a | b),
    }


def test_half_agreement_matches_a_direct_computation(runs) -> None:
    masks, correct, test_correct = runs
    result = stats.half_agreement(masks, correct, test_correct, np.arange(40), 7, SELECTION)
    expected = brute_force_halves(masks, correct, test_correct, np.arange(40), 7)
    assert result["models_per_half"] == 20
    assert result["pairs_both"] == expected["pairs_both"] > 0
    assert result["spearman_mem"] == pytest.approx(expected["spearman_mem"])
    assert result["jaccard_pairs"] == pytest.approx(expected["jaccard_pairs"])


def test_identical_halves_agree_perfectly(runs) -> None:
    masks, correct, test_correct = runs
    first, second = stats.split_halves(np.arange(40), 1)
    copied = [np.empty_like(a) for a in runs]
    for original, copy in zip(runs, copied):
        copy[first], copy[second] = original[first], original[first]
    result = stats.half_agreement(*copied, np.arange(40), 1, SELECTION)
    assert result["spearman_mem"] == pytest.approx(1.0) and result["jaccard_pairs"] == 1.0


def test_convergence_rows_use_the_first_models(runs) -> None:
    masks, correct, test_correct = runs
    counts = stats.model_counts([10, 20, 100], available=40)
    assert counts == [10, 20, 40]
    table = stats.convergence(masks, correct, test_correct, counts, 7, 0.05, SELECTION)
    assert table["n_models"].tolist() == [10, 20, 40]
    se_20 = memorization(masks[:20], correct[:20])["mem_se"].to_numpy()
    assert table["median_mem_se"].iloc[1] == pytest.approx(np.median(se_20))
    last = table.iloc[-1]
    for column, value in stats.half_agreement(masks, correct, test_correct, np.arange(40), 7, SELECTION).items():
        assert last[column] == pytest.approx(value)
    se = last["median_mem_se_memorized"]
    assert last["models_for_target_se"] == math.ceil(40 * (se / 0.05) ** 2)


def test_models_for_se_extrapolates_as_one_over_root_n() -> None:
    assert stats.models_for_se(100, 0.1, 0.05) == 400
    assert stats.models_for_se(100, 0.1, 0.1) == 100
    assert math.isnan(stats.models_for_se(100, 0.0, 0.05))
    assert math.isnan(stats.models_for_se(100, math.nan, 0.05))


def test_learning_speed_averages_over_models_and_epochs() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((3, 4, 10)) < 0.5
    prob = rng.random((3, 4, 10)).astype(np.float32)
    table = stats.learning_speed(correct, prob)
    for i in range(10):
        assert table["cumulative_accuracy"][i] == pytest.approx(np.mean([correct[k, e, i] for k in range(3) for e in range(4)]))
        assert table["mean_true_prob"][i] == pytest.approx(float(np.mean(prob[:, :, i], dtype=np.float64)))
    with pytest.raises(ValueError, match="models, epochs, n"):
        stats.learning_speed(correct[0], prob[0])


def test_detection_table_orients_each_score() -> None:
    noisy = np.array([True, False, False, True, False, False])
    p_out = np.array([0.0, 0.9, 1.0, 0.2, 0.8, 0.7])
    scores = pd.DataFrame({"mem": 1 - p_out, "p_out": p_out})
    table = stats.detection_table(noisy, scores, k=2)
    assert list(table.columns) == stats.DETECTION_COLUMNS
    assert table["roc_auc"].tolist() == [1.0, 1.0]
    assert table["suspicious_when"].tolist() == ["high", "low"]
    assert table["precision_at_n_noisy"].tolist() == [1.0, 1.0] and table["n_noisy"].tolist() == [2, 2]
    empty = stats.detection_table(np.zeros(6, bool), scores, k=2)
    assert empty.empty and list(empty.columns) == stats.DETECTION_COLUMNS
    curves = stats.precision_recall_table(np.zeros(6, bool), scores)
    assert curves.empty and list(curves.columns) == ["score", "recall", "precision"]


def test_a_proxy_that_mirrors_mem_agrees_fully() -> None:
    mem = np.array([0.9, 0.0, 0.1, 0.5, np.nan, 0.3])
    scores = pd.DataFrame({"mem": mem, "mem_soft": mem / 2})
    proxies = pd.DataFrame({"cumulative_accuracy": 1 - np.nan_to_num(mem), "mean_true_prob": np.nan_to_num(mem)})
    table = stats.proxy_agreement(scores, proxies, memorization_threshold=0.25)
    assert list(table.columns) == stats.PROXY_AGREEMENT_COLUMNS
    mirrored, inverted = table.iloc[0], table.iloc[1]
    assert mirrored["spearman_mem"] == pytest.approx(1) and mirrored["spearman_mem_soft"] == pytest.approx(1)
    assert mirrored["roc_auc_memorized"] == 1.0 and mirrored["precision_at_n_memorized"] == 1.0
    assert mirrored["n_memorized"] == 3
    assert inverted["spearman_mem"] == pytest.approx(-1)  # high probability is read as "not memorized"
