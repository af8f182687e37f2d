"""How closely an approximation follows the exact estimate.

* **R_mem**: the training examples whose reference mem ≥ the memorization threshold (0.25).
* **R_pairs**: the same-class pairs whose reference infl ≥ the influence threshold (0.15) and
  whose training example is in R_mem.
* Memorization: precision at |R_mem| (the share of the method's |R_mem| highest-scored
  examples that are in R_mem), the ROC AUC for R_mem, and, for methods that estimate mem
  itself, the mean absolute error against the reference mem.
* Influence: recall of R_pairs among the method's |R_pairs| and 10·|R_pairs| highest-scored
  pairs.

Ties at the k-th score share the remaining places (``longtail.diagnostics.precision_at_k``),
so a ranking with many ties gets the expected result of random tie-breaking; a NaN score
ranks last, and a pair a method does not list is never among its highest. Kedro-free.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from longtail.approx.result import InfluenceEstimate, MemorizationEstimate
from longtail.diagnostics import precision_at_k, roc_auc
from longtail.estimate import influence, memorization
from longtail.estimate.contrast import DEFAULT_BLOCK_MB

AGREEMENT_COLUMNS = [
    "method",
    "target",  # memorization | influence
    "cost_models",
    "seconds",
    "precision_at_r_mem",
    "roc_auc",
    "mae",
    "defined",  # share of training examples the method scores (memorization)
    "pair_recall_at_r_pairs",
    "pair_recall_at_10_r_pairs",
    "r_mem",
    "r_pairs",
]


@dataclass(frozen=True)
class Reference:
    """The exact estimate an approximation is measured against: every training example's
    ``mem`` (NaN where undefined), R_mem, and R_pairs as (train index, test index) rows."""

    mem: np.ndarray
    memorized: np.ndarray
    pairs: np.ndarray
    n_test: int

    @classmethod
    def from_models(
        cls,
        masks: np.ndarray,
        train_correct: np.ndarray,
        test_correct: np.ndarray,
        labels: tuple[np.ndarray, np.ndarray],
        memorization_threshold: float,
        influence_threshold: float,
        max_block_mb: float = DEFAULT_BLOCK_MB,
    ) -> Reference:
        """The exact estimate (``longtail.estimate``) from ``masks`` and the models'
        correctness; pairs of one class by ``labels`` = (train labels, test labels)."""
        mem = memorization(masks, train_correct)["mem"].to_numpy()
        memorized = np.nan_to_num(mem, nan=-np.inf) >= memorization_threshold
        pairs = influence(masks, test_correct, threshold=influence_threshold, labels=labels, max_block_mb=max_block_mb)
        keep = memorized[pairs["train_index"].to_numpy()]
        return cls(mem, memorized, pairs.loc[keep, ["train_index", "test_index"]].to_numpy(np.int64), test_correct.shape[1])

    def pair_keys(self) -> np.ndarray:
        return _keys(self.pairs[:, 0], self.pairs[:, 1], self.n_test)


def _keys(train: np.ndarray, test: np.ndarray, n_test: int) -> np.ndarray:
    return np.asarray(train, np.int64) * n_test + np.asarray(test, np.int64)


def pair_recall_at_k(reference: np.ndarray, listed: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of the ``reference`` pairs (integer keys) among the ``k`` highest-scored of the
    ``listed`` ones (keys, unique, with their ``score``); NaN without reference pairs."""
    if len(reference) == 0:
        return math.nan
    if len(np.unique(listed)) != len(listed):
        raise ValueError("a method lists some (train, test) pair more than once")
    if len(listed) == 0:
        return 0.0
    k = min(k, len(listed))
    return precision_at_k(np.isin(listed, reference), score, k) * k / len(reference)


def memorization_agreement(reference: Reference, estimate: MemorizationEstimate, estimates_mem: bool) -> dict[str, float]:
    """Precision at |R_mem|, ROC AUC, and (``estimates_mem``) the mean absolute error over the
    examples both define; ``defined`` is the share of examples the method scores."""
    score = np.asarray(estimate.score, np.float64)
    if score.shape != reference.mem.shape:
        raise ValueError(f"method {estimate.method!r} scores {score.shape[0]} examples; the reference has {len(reference.mem)}")
    r_mem = int(reference.memorized.sum())
    both = np.isfinite(score) & np.isfinite(reference.mem)
    return {
        "precision_at_r_mem": precision_at_k(reference.memorized, score, r_mem) if r_mem else math.nan,
        "roc_auc": roc_auc(reference.memorized, score),
        "mae": float(np.abs(score - reference.mem)[both].mean()) if estimates_mem and both.any() else math.nan,
        "defined": float(np.isfinite(score).mean()),
    }


def influence_agreement(reference: Reference, estimate: InfluenceEstimate) -> dict[str, float]:
    """Recall of R_pairs among the method's |R_pairs| and 10·|R_pairs| highest-scored pairs."""
    pairs = estimate.pairs
    listed = _keys(pairs["train_index"].to_numpy(), pairs["test_index"].to_numpy(), reference.n_test)
    score, wanted, r_pairs = pairs["score"].to_numpy(np.float64), reference.pair_keys(), len(reference.pairs)
    return {
        "pair_recall_at_r_pairs": pair_recall_at_k(wanted, listed, score, r_pairs),
        "pair_recall_at_10_r_pairs": pair_recall_at_k(wanted, listed, score, 10 * r_pairs),
    }


def agreement(
    reference: Reference,
    memorization_estimates: Sequence[MemorizationEstimate],
    influence_estimates: Sequence[InfluenceEstimate],
    estimates_mem: Collection[str],
) -> pd.DataFrame:
    """One row per method and target (memorization, influence): its cost, seconds and the
    measure's figures (``AGREEMENT_COLUMNS``); MAE for the methods named in ``estimates_mem``."""
    sizes = {"r_mem": int(reference.memorized.sum()), "r_pairs": len(reference.pairs)}
    rows = [
        {**_cost(e, "memorization"), **memorization_agreement(reference, e, e.method in estimates_mem), **sizes}
        for e in memorization_estimates
    ]
    rows += [{**_cost(e, "influence"), **influence_agreement(reference, e), **sizes} for e in influence_estimates]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS).astype({"r_mem": "int64", "r_pairs": "int64"})


def _cost(estimate: MemorizationEstimate | InfluenceEstimate, target: str) -> dict[str, object]:
    return {"method": estimate.method, "target": target, "cost_models": float(estimate.cost_models), "seconds": float(estimate.seconds)}


def frontier(costs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which points no other point beats: none costs at most as much and agrees at least as
    well, better in one of the two (NaN agreement is never on the frontier)."""
    costs, values = np.asarray(costs, np.float64), np.asarray(values, np.float64)
    defined = np.isfinite(values)
    on = np.zeros(len(costs), dtype=bool)
    for i in np.flatnonzero(defined):
        no_worse = defined & (costs <= costs[i]) & (values >= values[i])
        better = (costs < costs[i]) | (values > values[i])
        on[i] = not (no_worse & better).any()
    return on
