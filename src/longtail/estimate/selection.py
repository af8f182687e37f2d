"""The one rule that decides what a study reports: which pairs are high-influence and which
training examples are memorized.

* ``paper``: the cut-offs alone (Feldman & Zhang): infl ≥ influence threshold and the training
  example's mem ≥ memorization threshold; memorized: mem ≥ memorization threshold.
* ``controlled`` (default): the same cut-offs, and each estimate's Benjamini–Yekutieli
  q-value ≤ ``fdr`` (the pair's own and its training example's), so that the reported lists
  hold at most a share ``fdr`` of false discoveries in expectation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

MODES = ("controlled", "paper")


@dataclass(frozen=True)
class Selection:
    """A selection rule and its cut-offs (they travel with every table selected by it)."""

    mode: Literal["controlled", "paper"]
    influence_threshold: float
    memorization_threshold: float
    fdr: float

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"selection mode {self.mode!r} is not one of {MODES}")

    @classmethod
    def of(cls, scoring: Any) -> Selection:
        """The rule a ``ScoringParams`` (``selection``, both thresholds, ``fdr``) asks for."""
        return cls(scoring.selection, scoring.influence_threshold, scoring.memorization_threshold, scoring.fdr)

    def parameters(self) -> dict[str, Any]:
        """The rule as carried by a selected table: ``selection`` (the mode) and the cut-offs."""
        carried = asdict(self)
        return {"selection": carried.pop("mode"), **carried}

    def memorized(self, mem: np.ndarray, mem_q: np.ndarray) -> np.ndarray:
        """Bool: reported as memorized (NaN never is)."""
        keep = np.nan_to_num(np.asarray(mem, dtype=np.float64), nan=-np.inf) >= self.memorization_threshold
        if self.mode == "controlled":
            keep &= _at_most(mem_q, self.fdr)
        return keep

    def pairs(self, pairs: pd.DataFrame) -> np.ndarray:
        """Bool per row of ``pairs`` (columns ``infl``, ``q_value``, ``mem``, ``mem_q``): reported."""
        infl = np.nan_to_num(pairs["infl"].to_numpy(dtype=np.float64), nan=-np.inf)
        keep = (infl >= self.influence_threshold) & self.memorized(pairs["mem"], pairs["mem_q"])
        if self.mode == "controlled":
            keep &= _at_most(pairs["q_value"], self.fdr)
        return keep


def with_memorization(pairs: pd.DataFrame, memorization: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` with its training examples' ``mem`` and ``mem_q`` (rows of ``memorization``
    by ``train_index``) added in place: the columns ``Selection.pairs`` reads."""
    train = pairs["train_index"].to_numpy()
    for column in ("mem", "mem_q"):
        pairs[column] = memorization[column].to_numpy()[train]
    return pairs


def _at_most(values: Any, limit: float) -> np.ndarray:
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=np.inf) <= limit
