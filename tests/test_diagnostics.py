"""The diagnostics' statistics against independent references: scikit-learn, scipy, brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from longtail import diagnostics as stats
from longtail.estimate import influence, memorization


def labelled_scores(seed: int, n: int = 40, levels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Random labels with at least one of each class, and scores with many ties."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    positive[:2] = [True, False]
    return positive, rng.integers(0, levels, n) / levels


def brute_force_ranking(positive: np.ndarray, score: np.ndarray) -> tuple[float, float, list, list]:
    """ROC AUC over every (positive, negative) pair, ties counting half; precision and recall
    of flagging score >= t for each distinct t from the highest down; AP = Σ ΔR · P."""
    pos, neg = score[positive], score[~positive]
    auc = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    precision, recall = [], []
    for t in sorted(set(score), reverse=True):
        flagged = score >= t
        precision.append((flagged & positive).sum() / flagged.sum())
        recall.append((flagged & positive).sum() / positive.sum())
    ap = sum((r - r0) * p for p, r, r0 in zip(precision, recall, [0.0, *recall[:-1]]))
    return float(auc), float(ap), precision, recall


@pytest.mark.parametrize("seed", range(20))
def test_ranking_statistics_match_scikit_learn(seed: int) -> None:
    positive, score = labelled_scores(seed, n=5 + 3 * seed)
    auc, ap, brute_precision, brute_recall = brute_force_ranking(positive, score)
    assert stats.roc_auc(positive, score) == pytest.approx(auc, abs=1e-12)
    assert stats.average_precision(positive, score) == pytest.approx(ap, abs=1e-12)
    np.testing.assert_allclose(stats.precision_recall(positive, score), [brute_precision, brute_recall], rtol=1e-12)
    assert stats.roc_auc(positive, score) == pytest.approx(roc_auc_score(positive, score), abs=1e-12)
    assert stats.average_precision(positive, score) == pytest.approx(average_precision_score(positive, score), abs=1e-12)
    precision, recall = stats.precision_recall(positive, score)
    reference_precision, reference_recall, _ = precision_recall_curve(positive, score)
    np.testing.assert_allclose(precision, reference_precision[:-1][::-1])
    np.testing.assert_allclose(recall, reference_recall[:-1][::-1])


@pytest.mark.parametrize("seed", range(10))
def test_spearman_matches_scipy_with_nan_omitted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 6, 50).astype(float), rng.integers(0, 6, 50).astype(float)
    a[rng.random(50) < 0.1] = np.nan
    b[rng.random(50) < 0.1] = np.nan
    assert stats.spearman(a, b) == pytest.approx(spearmanr(a, b, nan_policy="omit").statistic, abs=1e-12)
    keep = ~(np.isnan(a) | np.isnan(b))
    ranks = [[np.mean([j + 1 for j in range(keep.sum()) if np.sort(v)[j] == x]) for x in v] for v in (a[keep], b[keep])]
    assert stats.spearman(a, b) == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)  # Pearson of average ranks


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


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """160 models: training example i is memorized by an amount falling from 0.5 to 0 with i,
    and helps test example i (i < 12) by 0.4; every other pair has no influence."""
    rng = np.random.default_rng(0)
    masks = rng.random((160, 30)) < 0.7
    correct = rng.random((160, 30)) < 0.4 + np.linspace(0.5, 0, 30) * masks
    test_correct = rng.random((160, 12)) < 0.3 + 0.4 * masks[:, :12]
    return masks, correct, test_correct


HOW = stats.Reporting(influence_threshold=0.15, memorization_threshold=0.25, fdr=0.5, share=0.6)


def _direct_infl(masks: np.ndarray, test_correct: np.ndarray, train: int, test: int) -> float:
    seen = masks[:, train]
    return float(test_correct[seen, test].mean() - test_correct[~seen, test].mean())


def brute_force_halves(masks, correct, test_correct, models, seed, mode) -> dict[str, float]:
    """The agreement of two halves, from the public estimators, Python sets and direct means."""
    halves = stats.split_halves(models, seed)
    mems, memorized, pair_sets = [], [], []
    for half in halves:
        scores = memorization(masks[half], correct[half])
        pairs = influence(masks[half], test_correct[half], threshold=0.15)
        mem, mem_q = scores["mem"].to_numpy(), scores["mem_q"].to_numpy()
        controlled = mode == "controlled"
        keep = {i for i in range(len(mem)) if mem[i] >= 0.25 and (not controlled or mem_q[i] <= 0.5)}
        pair_sets.append({
            (train, test) for train, test, q in pairs[["train_index", "test_index", "q_value"]].itertuples(index=False)
            if train in keep and (not controlled or q <= 0.5)
        })
        mems.append(mem)
        memorized.append(keep)
    (a, b), second = pair_sets, halves[1]
    replicated = [_direct_infl(masks[second], test_correct[second], i, z) >= 0.09 for i, z in a]
    return {
        "spearman_mem": spearmanr(*mems, nan_policy="omit").statistic,
        "pairs_both": len(a & b),
        "jaccard_pairs": len(a & b) / len(a | b),
        "pairs_replicated": float(np.mean(replicated)),
        "memorized_replicated": float(np.mean([mems[1][i] >= 0.15 for i in memorized[0]])),
        "jaccard_memorized": len(memorized[0] & memorized[1]) / len(memorized[0] | memorized[1]),
    }


@pytest.mark.parametrize("mode", ["controlled", "paper"])
def test_half_agreement_matches_a_direct_computation(planted, mode) -> None:
    masks, correct, test_correct = planted
    result = stats.half_agreement(masks, correct, test_correct, np.arange(160), 7, HOW)
    expected = brute_force_halves(masks, correct, test_correct, np.arange(160), 7, mode)
    assert result["models_per_half"] == 80
    assert result[f"{mode}_pairs_both"] == expected["pairs_both"] > 0
    assert result["spearman_mem"] == pytest.approx(expected["spearman_mem"])
    for name in ("jaccard_pairs", "pairs_replicated", "memorized_replicated", "jaccard_memorized"):
        assert result[f"{mode}_{name}"] == pytest.approx(expected[name]), name
    assert 0 < result["paper_pairs_replicated"] < result["controlled_pairs_replicated"]  # both outcomes occur


def test_identical_halves_agree_perfectly(planted) -> None:
    first, second = stats.split_halves(np.arange(160), 1)
    copied = [np.empty_like(a) for a in planted]
    for original, copy in zip(planted, copied):
        copy[first], copy[second] = original[first], original[first]
    result = stats.half_agreement(*copied, np.arange(160), 1, HOW)
    assert result["spearman_mem"] == pytest.approx(1.0)
    for mode in ("controlled", "paper"):
        assert result[f"{mode}_jaccard_pairs"] == 1.0 and result[f"{mode}_pairs_replicated"] == 1.0


def test_convergence_rows_use_the_first_models(runs) -> None:
    masks, correct, test_correct = runs
    counts = stats.model_counts([10, 20, 100], available=40)
    assert counts == [10, 20, 40]
    table = stats.convergence(masks, correct, test_correct, counts, 7, 0.05, HOW)
    assert table["n_models"].tolist() == [10, 20, 40]
    se_20 = memorization(masks[:20], correct[:20])["mem_se"].to_numpy()
    assert table["median_mem_se"].iloc[1] == pytest.approx(np.median(se_20))
    last = table.iloc[-1]
    for column, value in stats.half_agreement(masks, correct, test_correct, np.arange(40), 7, HOW).items():
        assert last[column] == pytest.approx(value, nan_ok=True)
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


def test_subset_fit_is_each_models_accuracy_on_its_own_subset_and_the_flipped_examples_p_in() -> None:
    rng = np.random.default_rng(0)
    masks, correct = rng.random((12, 30)) < 0.7, rng.random((12, 30)) < 0.8
    masks[:, 3] = False  # an example no model trained on
    noisy = np.zeros(30, dtype=bool)
    noisy[[1, 3, 7]] = True
    fit = stats.subset_fit(masks, correct, noisy)
    per_model = [correct[t][masks[t]].mean() for t in range(12)]
    assert fit["mean_subset_accuracy"] == pytest.approx(np.mean(per_model))
    assert fit["worst_model_subset_accuracy"] == pytest.approx(min(per_model))
    assert fit["noisy_subset_accuracy"] == pytest.approx(np.mean([correct[masks[:, j], j].mean() for j in (1, 7)]))
    assert np.isnan(stats.subset_fit(masks, correct)["noisy_subset_accuracy"])
