"""How far to trust the subsampling estimates, how many models are enough, and whether a cheap
proxy would do. Kedro-free: numpy arrays and DataFrames in, numbers and DataFrames out.

* **Label-error detection**: how well a score ranks planted label errors first (ROC AUC,
  average precision, precision among the top k).
* **Run-to-run agreement**: ``mem`` and the paper's high-influence pairs estimated on two
  disjoint halves of the models, compared by Spearman correlation and Jaccard overlap.
* **Convergence**: the standard error and the agreement as a function of the number of models.
* **Learning-speed proxies** (Jiang et al. 2021, "Characterizing Structural Regularities of
  Labeled Data in Overparameterized Models"): how early and how surely full-data models fit
  each training example, from a few training runs instead of hundreds.

The statistics are implemented here in numpy (ranks with ties averaged) and tested against
scikit-learn and scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from longtail.estimate import influence, memorization

__all__ = [
    "average_ranks",
    "roc_auc",
    "precision_recall",
    "average_precision",
    "precision_at_k",
    "spearman",
    "jaccard",
    "split_halves",
    "PairSelection",
    "half_agreement",
    "model_counts",
    "models_for_se",
    "convergence",
    "learning_speed",
    "suspicion",
    "detection_table",
    "precision_recall_table",
    "proxy_agreement",
    "SUSPICIOUS_WHEN",
    "DETECTION_COLUMNS",
    "PROXY_AGREEMENT_COLUMNS",
]

#: Whether a high or a low value of a score marks an example as likely mislabeled (or memorized).
SUSPICIOUS_WHEN = {
    "mem": "high",
    "mem_soft": "high",
    "p_out": "low",  # held-out models disagree with the label
    "cumulative_accuracy": "low",  # learned late, or never
    "mean_true_prob": "low",
}
DETECTION_COLUMNS = [
    "score",
    "suspicious_when",
    "roc_auc",
    "average_precision",
    "precision_at_n_noisy",
    "precision_at_k",
    "k",
    "n_noisy",
    "n_examples",
]
PROXY_AGREEMENT_COLUMNS = [
    "proxy",
    "spearman_mem",
    "spearman_mem_soft",
    "roc_auc_memorized",
    "precision_at_n_memorized",
    "n_memorized",
]


# --------------------------------------------------------------------------- ranking statistics


def _ranking_inputs(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bool labels and float scores of one length; a NaN score ranks last (it flags nothing)."""
    positive, score = np.asarray(positive), np.asarray(score, dtype=np.float64)
    if positive.ndim != 1 or positive.shape != score.shape:
        raise ValueError(f"labels and scores must be 1-D of one length; got shapes {positive.shape} and {score.shape}")
    if positive.dtype != bool:
        raise ValueError(f"labels must be bool (True = positive); got dtype {positive.dtype}")
    return positive, np.nan_to_num(score, nan=-np.inf)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1 … n of ``values`` (no NaN), tied values sharing the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("values contain NaN; drop or replace them before ranking")
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    stops = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + 1 + stops) / 2, stops - starts)
    return ranks


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative, ties counting half
    (the Mann-Whitney U statistic from average ranks). NaN without positives or negatives."""
    positive, score = _ranking_inputs(positive, score)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = average_ranks(score)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of flagging every example with score ≥ t, for each distinct score t
    from the highest down (tied examples are flagged together). Empty without positives."""
    positive, score = _ranking_inputs(positive, score)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-score, kind="mergesort")
    ordered = score[order]
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    true_pos = np.cumsum(positive[order])[last_of_tie]
    flagged = np.flatnonzero(last_of_tie) + 1
    return true_pos / flagged, true_pos / n_pos


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Σ_n (R_n − R_{n−1}) P_n over the distinct thresholds (scikit-learn's
    ``average_precision_score``). NaN without positives."""
    precision, recall = precision_recall(positive, score)
    if not len(precision):
        return math.nan
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def precision_at_k(positive: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of positives among the ``k`` highest scores (``k`` clipped to the number of
    examples). Examples tied with the k-th score share the remaining places: each counts with
    the probability that random tie-breaking would pick it."""
    positive, score = _ranking_inputs(positive, score)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    k = min(k, len(score))
    if k == 0:
        return math.nan
    kth = np.sort(score)[len(score) - k]
    above, tied = score > kth, score == kth
    hits = positive[above].sum() + (k - above.sum()) * positive[tied].mean()
    return float(hits / k)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's on average ranks) over the pairs where neither
    value is NaN. NaN with fewer than two such pairs or when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two 1-D arrays of one length; got shapes {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 2:
        return math.nan
    x, y = average_ranks(a[keep]), average_ranks(b[keep])
    x, y = x - x.mean(), y - y.mean()
    scale = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / scale) if scale > 0 else math.nan


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two sets of integer keys; NaN when both are empty."""
    union = np.union1d(a, b).size
    return np.intersect1d(a, b).size / union if union else math.nan


# ------------------------------------------------------------------------- run-to-run agreement


def split_halves(models: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, equally large, sorted halves of ``models`` drawn by a generator seeded with
    ``seed`` (with an odd count, one model is left out)."""
    shuffled = np.random.default_rng(seed).permutation(np.asarray(models))
    half = len(shuffled) // 2
    return np.sort(shuffled[:half]), np.sort(shuffled[half : 2 * half])


@dataclass(frozen=True)
class PairSelection:
    """The paper's high-influence pairs: infl ≥ ``influence_threshold`` and mem of the training
    example ≥ ``memorization_threshold``; ``max_block_mb`` bounds the influence computation."""

    influence_threshold: float
    memorization_threshold: float
    max_block_mb: float = 256.0


def _estimates(
    masks: np.ndarray, correct: np.ndarray, test_correct: np.ndarray, models: np.ndarray, selection: PairSelection
) -> tuple[np.ndarray, np.ndarray]:
    """``mem`` from ``models`` alone, and the pairs they select as keys train · n_test + test."""
    mem = memorization(masks[models], correct[models])["mem"].to_numpy()
    pairs = influence(
        masks[models], test_correct[models], threshold=selection.influence_threshold,
        max_block_mb=selection.max_block_mb,
    )
    train, test = pairs["train_index"].to_numpy(), pairs["test_index"].to_numpy()
    keep = mem[train] >= selection.memorization_threshold  # NaN mem is never selected
    return mem, train[keep] * test_correct.shape[1] + test[keep]


def half_agreement(
    masks: np.ndarray,
    correct: np.ndarray,
    test_correct: np.ndarray,
    models: np.ndarray,
    seed: int,
    selection: PairSelection,
) -> dict[str, float]:
    """Split ``models`` into two halves (``split_halves``), estimate on each, and compare: the
    Spearman correlation of ``mem`` and the Jaccard overlap of the pairs each selects."""
    first, second = split_halves(models, seed)
    mem_a, pairs_a = _estimates(masks, correct, test_correct, first, selection)
    mem_b, pairs_b = _estimates(masks, correct, test_correct, second, selection)
    return {
        "models_per_half": len(first),
        "spearman_mem": spearman(mem_a, mem_b),
        "pairs_first_half": len(pairs_a),
        "pairs_second_half": len(pairs_b),
        "pairs_both": len(np.intersect1d(pairs_a, pairs_b)),
        "jaccard_pairs": jaccard(pairs_a, pairs_b),
    }


# ---------------------------------------------------------------------------------- convergence


def model_counts(requested: Sequence[int], available: int) -> list[int]:
    """The requested model counts that exist, then all ``available`` models."""
    return sorted({n for n in requested if n < available} | {available})


def models_for_se(n_models: int, se: float, target: float) -> float:
    """Models needed for a standard error of ``target``, extrapolated from ``se`` at
    ``n_models`` with se ∝ 1/√n_models. NaN when ``se`` is 0 or NaN (nothing to extrapolate)."""
    if not se > 0:
        return math.nan
    return float(math.ceil(n_models * (se / target) ** 2))


def convergence(
    masks: np.ndarray,
    correct: np.ndarray,
    test_correct: np.ndarray,
    counts: Sequence[int],
    seed: int,
    target_se: float,
    selection: PairSelection,
) -> pd.DataFrame:
    """One row per count n of models, estimated from the first n models (what a study with
    ``sampling.n_models = n`` would have trained, since adding models keeps the first rows).

    ``median_mem_se`` is over all training examples; it is 0 where most examples are always
    classified right. ``median_mem_se_memorized`` is over the fixed set of examples that all
    models find memorized (mem ≥ ``selection.memorization_threshold``), the ones a user acts on,
    and is what ``models_for_target_se`` extrapolates. The agreement columns compare two halves
    of the n models (``half_agreement``).
    """
    mem = memorization(masks, correct)["mem"].to_numpy()
    memorized = np.nan_to_num(mem, nan=-np.inf) >= selection.memorization_threshold
    rows = []
    for n in counts:
        se = memorization(masks[:n], correct[:n])["mem_se"].to_numpy()
        median_memorized = float(np.nanmedian(se[memorized])) if memorized.any() else math.nan
        rows.append(
            {
                "n_models": n,
                "median_mem_se": float(np.nanmedian(se)),
                "median_mem_se_memorized": median_memorized,
                "target_se": target_se,
                "models_for_target_se": models_for_se(n, median_memorized, target_se),
                **half_agreement(masks, correct, test_correct, np.arange(n), seed, selection),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ learning-speed proxies


def learning_speed(epoch_correct: np.ndarray, epoch_true_prob: np.ndarray) -> pd.DataFrame:
    """Per example, averaged over models and epochs (K, epochs, n): ``cumulative_accuracy``
    (share of epochs at whose end a model classifies it right) and ``mean_true_prob`` (the
    mean probability of its label). Low values mark examples learned late, or never."""
    if epoch_correct.ndim != 3 or epoch_correct.shape != epoch_true_prob.shape:
        raise ValueError(
            "epoch_correct and epoch_true_prob must both be (models, epochs, n); "
            f"got {epoch_correct.shape} and {epoch_true_prob.shape}"
        )
    return pd.DataFrame(
        {
            "cumulative_accuracy": epoch_correct.mean(axis=(0, 1), dtype=np.float64),
            "mean_true_prob": epoch_true_prob.mean(axis=(0, 1), dtype=np.float64),
        }
    )


def suspicion(table: pd.DataFrame, score: str) -> np.ndarray:
    """``table[score]`` oriented so that higher means more suspicious (see ``SUSPICIOUS_WHEN``)."""
    values = table[score].to_numpy(dtype=np.float64)
    return values if SUSPICIOUS_WHEN[score] == "high" else -values


# ------------------------------------------------------------------------------------- reports


def detection_table(noisy: np.ndarray, scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """How well each column of ``scores`` (named in ``SUSPICIOUS_WHEN``) finds the ``noisy``
    examples: one row per score. Empty, with the same columns, when nothing is noisy."""
    n_noisy = int(noisy.sum())
    if n_noisy == 0:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    rows = []
    for name in scores.columns:
        score = suspicion(scores, name)
        rows.append(
            {
                "score": name,
                "suspicious_when": SUSPICIOUS_WHEN[name],
                "roc_auc": roc_auc(noisy, score),
                "average_precision": average_precision(noisy, score),
                "precision_at_n_noisy": precision_at_k(noisy, score, n_noisy),
                "precision_at_k": precision_at_k(noisy, score, k),
                "k": min(k, len(noisy)),
                "n_noisy": n_noisy,
                "n_examples": len(noisy),
            }
        )
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


def precision_recall_table(noisy: np.ndarray, scores: pd.DataFrame) -> pd.DataFrame:
    """Precision-recall curves (``precision_recall``) of each column of ``scores`` at finding the
    ``noisy`` examples, in long form: ``score``, ``recall``, ``precision``."""
    curves = {name: precision_recall(noisy, suspicion(scores, name)) for name in scores.columns}
    return pd.DataFrame(
        {
            "score": np.repeat(np.array(list(curves), dtype=object), [len(p) for p, _ in curves.values()]),
            "recall": np.concatenate([np.empty(0), *(r for _, r in curves.values())]),
            "precision": np.concatenate([np.empty(0), *(p for p, _ in curves.values())]),
        }
    )


def proxy_agreement(scores: pd.DataFrame, proxies: pd.DataFrame, memorization_threshold: float) -> pd.DataFrame:
    """How closely each proxy (column of ``proxies``, oriented by ``SUSPICIOUS_WHEN``) follows
    ``mem`` and ``mem_soft`` of ``scores``: Spearman correlations (positive = agreement), and
    how well it ranks the memorized examples (mem ≥ ``memorization_threshold``) first."""
    mem = scores["mem"].to_numpy(dtype=np.float64)
    memorized = np.nan_to_num(mem, nan=-np.inf) >= memorization_threshold
    n_memorized = int(memorized.sum())
    rows = []
    for name in proxies.columns:
        score = suspicion(proxies, name)
        rows.append(
            {
                "proxy": name,
                "spearman_mem": spearman(score, mem),
                "spearman_mem_soft": spearman(score, scores["mem_soft"].to_numpy(dtype=np.float64)),
                "roc_auc_memorized": roc_auc(memorized, score),
                "precision_at_n_memorized": precision_at_k(memorized, score, n_memorized) if n_memorized else math.nan,
                "n_memorized": n_memorized,
            }
        )
    return pd.DataFrame(rows, columns=PROXY_AGREEMENT_COLUMNS)
