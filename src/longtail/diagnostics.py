"""How far to trust the subsampling estimates, how many models are enough, and whether a cheap
proxy would do. Kedro-free: numpy arrays and DataFrames in, numbers and DataFrames out.

* **Label-error detection**: how well a score ranks planted label errors first (ROC AUC,
  average precision, precision among the top k).
* **Run-to-run agreement and replication**: ``mem`` and the reported lists (memorized
  examples, high-influence pairs) estimated on two disjoint halves of the models, for both
  selections (``controlled`` and ``paper``): Spearman correlation of mem, Jaccard overlap of
  the lists, and how many of half A's reported items replicate in half B.
* **Convergence**: the standard error and the agreement as a function of the number of models.
* **Fit**: how much of their own training examples the subset models fit (memorization
  that training never reached cannot be measured).
* **Learning-speed proxies** (Jiang et al. 2021, "Characterizing Structural Regularities of
  Labeled Data in Overparameterized Models"): how early and how surely full-data models fit
  each training example, from a few training runs instead of hundreds.

Ranking statistics come from scikit-learn and scipy; ``precision_at_k`` (ties shared by
random tie-breaking) has no library equivalent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from longtail.estimate import MODES, Selection, influence, influence_of, memorization, with_memorization

__all__ = [
    "roc_auc",
    "precision_recall",
    "average_precision",
    "precision_at_k",
    "spearman",
    "jaccard",
    "split_halves",
    "Reporting",
    "half_agreement",
    "model_counts",
    "models_for_se",
    "convergence",
    "learning_speed",
    "suspicion",
    "detection_table",
    "precision_recall_table",
    "proxy_agreement",
    "subset_fit",
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
    finite = score[np.isfinite(score)]
    lowest = finite.min() - 1.0 if finite.size else 0.0
    return positive, np.where(np.isnan(score), lowest, score)


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative, ties counting half
    (``sklearn.metrics.roc_auc_score``). NaN without positives or negatives."""
    positive, score = _ranking_inputs(positive, score)
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, score))


def precision_recall(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of flagging every example with score ≥ t, for each distinct score t
    from the highest down (``sklearn.metrics.precision_recall_curve`` without its final
    (1, 0) point). Empty without positives."""
    positive, score = _ranking_inputs(positive, score)
    if not positive.any():
        return np.empty(0), np.empty(0)
    precision, recall, _ = precision_recall_curve(positive, score)
    return precision[-2::-1], recall[-2::-1]


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Σ_n (R_n − R_{n−1}) P_n over the distinct thresholds
    (``sklearn.metrics.average_precision_score``). NaN without positives."""
    positive, score = _ranking_inputs(positive, score)
    if not positive.any():
        return math.nan
    return float(average_precision_score(positive, score))


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
    """Spearman's rank correlation (``scipy.stats.spearmanr``) over the pairs where neither
    value is NaN. NaN with fewer than two such pairs or when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two 1-D arrays of one length; got shapes {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 2 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan
    return float(spearmanr(a[keep], b[keep]).statistic)


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
class Reporting:
    """How a study reports: its cut-offs and false discovery rate (both selections are
    compared), ``labels`` = (train labels, test labels) for same-class pairs or None for all
    pairs, the influence computation's memory bound, and ``share``: an item of half A
    replicates when half B's estimate is at least ``share`` × its cut-off."""

    influence_threshold: float
    memorization_threshold: float
    fdr: float
    labels: tuple[np.ndarray, np.ndarray] | None = None
    max_block_mb: float = 256.0
    share: float = 0.6

    def selection(self, mode: str) -> Selection:
        return Selection(mode, self.influence_threshold, self.memorization_threshold, self.fdr)


@dataclass(frozen=True)
class _Half:
    """One half's estimates: the memorization table and its influence pairs (with mem, mem_q)."""

    models: np.ndarray
    memorization: pd.DataFrame
    pairs: pd.DataFrame


def _half(masks: np.ndarray, correct: np.ndarray, test_correct: np.ndarray, models: np.ndarray, how: Reporting) -> _Half:
    scores = memorization(masks[models], correct[models])
    pairs = influence(
        masks[models], test_correct[models], threshold=how.influence_threshold, labels=how.labels,
        max_block_mb=how.max_block_mb,
    )
    return _Half(models, scores, with_memorization(pairs, scores))


def _replication(
    a: _Half, b: _Half, masks: np.ndarray, test_correct: np.ndarray, rule: Selection, share: float
) -> dict[str, float]:
    """Half A's reported lists against half B's: sizes, Jaccard overlaps, and the share of A's
    items whose B estimate reaches ``share`` × the cut-off (NaN when A reports nothing)."""
    n_test = test_correct.shape[1]
    memorized_a = np.flatnonzero(rule.memorized(a.memorization["mem"], a.memorization["mem_q"]))
    memorized_b = np.flatnonzero(rule.memorized(b.memorization["mem"], b.memorization["mem_q"]))
    reported_a, reported_b = (half.pairs[rule.pairs(half.pairs)] for half in (a, b))
    keys_a, keys_b = (p["train_index"].to_numpy() * n_test + p["test_index"].to_numpy() for p in (reported_a, reported_b))
    again = influence_of(masks[b.models], test_correct[b.models], reported_a["train_index"], reported_a["test_index"])
    mem_b = b.memorization["mem"].to_numpy()
    return {
        "memorized_first_half": len(memorized_a),
        "memorized_second_half": len(memorized_b),
        "memorized_replicated": _share(mem_b[memorized_a] >= share * rule.memorization_threshold),
        "jaccard_memorized": jaccard(memorized_a, memorized_b),
        "pairs_first_half": len(keys_a),
        "pairs_second_half": len(keys_b),
        "pairs_both": len(np.intersect1d(keys_a, keys_b)),
        "pairs_replicated": _share(again["infl"].to_numpy() >= share * rule.influence_threshold),
        "jaccard_pairs": jaccard(keys_a, keys_b),
    }


def _share(hits: np.ndarray) -> float:
    return float(hits.mean()) if hits.size else math.nan


def half_agreement(
    masks: np.ndarray,
    correct: np.ndarray,
    test_correct: np.ndarray,
    models: np.ndarray,
    seed: int,
    how: Reporting,
) -> dict[str, float]:
    """Split ``models`` into two halves (``split_halves``), estimate on each, and compare: the
    Spearman correlation of ``mem``, and for each selection (``controlled_*``, ``paper_*``) the
    lists each half reports, their Jaccard overlaps and how many of half A's replicate in B."""
    first, second = split_halves(models, seed)
    a, b = (_half(masks, correct, test_correct, half, how) for half in (first, second))
    result: dict[str, float] = {
        "models_per_half": len(first),
        "spearman_mem": spearman(a.memorization["mem"].to_numpy(), b.memorization["mem"].to_numpy()),
    }
    for mode in MODES:
        replication = _replication(a, b, masks, test_correct, how.selection(mode), how.share)
        result.update({f"{mode}_{name}": value for name, value in replication.items()})
    return result


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
    how: Reporting,
) -> pd.DataFrame:
    """One row per count n of models, estimated from the first n models (what a study with
    ``sampling.n_models = n`` would have trained, since adding models keeps the first rows).

    ``median_mem_se`` is over all training examples; it is 0 where most examples are always
    classified right. ``median_mem_se_memorized`` is over the fixed set of examples that all
    models find memorized (mem ≥ ``how.memorization_threshold``), the ones a user acts on,
    and is what ``models_for_target_se`` extrapolates (``mem_se`` is the half-width of the
    Newcombe interval / 1.96, never 0). The agreement columns compare two halves of the n
    models (``half_agreement``).
    """
    mem = memorization(masks, correct)["mem"].to_numpy()
    memorized = np.nan_to_num(mem, nan=-np.inf) >= how.memorization_threshold
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
                **half_agreement(masks, correct, test_correct, np.arange(n), seed, how),
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


# --------------------------------------------------------------------------- fit


def subset_fit(masks: np.ndarray, train_correct: np.ndarray, noisy: np.ndarray | None = None) -> dict[str, float]:
    """How well the models fit their own training examples (masks: which they trained on).

    ``mean_subset_accuracy`` and ``worst_model_subset_accuracy``: the mean and the smallest,
    over models, of a model's accuracy on its own subset (the ``subset_accuracy`` of its
    MLflow run). ``noisy_subset_accuracy``: over the ``noisy`` (flipped) examples, the mean
    accuracy of the models that trained on them, i.e. their mean ``p_in`` (NaN without any):
    memorizing a flipped label is fitting it, so this is the ceiling of their ``mem``.
    """
    fitted = masks & train_correct
    per_model = np.count_nonzero(fitted, axis=1) / np.maximum(np.count_nonzero(masks, axis=1), 1)
    in_models = np.count_nonzero(masks, axis=0)
    flipped = np.zeros(masks.shape[1], dtype=bool) if noisy is None else noisy & (in_models > 0)
    p_in = np.count_nonzero(fitted[:, flipped], axis=0) / in_models[flipped]
    return {
        "mean_subset_accuracy": float(per_model.mean()),
        "worst_model_subset_accuracy": float(per_model.min()),
        "noisy_subset_accuracy": float(p_in.mean()) if p_in.size else math.nan,
    }
