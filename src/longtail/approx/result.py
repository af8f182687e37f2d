"""What every approximation returns: its scores and what they cost.

Cost is counted in subset-model trainings of the study it approximates: a model trained on
``round(ratio * n_train)`` examples for the study's epochs counts 1, a full-data model
``1 / ratio``; extra passes (per-example gradients, curvature probes, checkpoint evaluations)
count by the seconds they take over the seconds of one subset model measured in the same process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PAIR_COLUMNS = ("train_index", "test_index", "score")


@dataclass(frozen=True)
class MemorizationEstimate:
    """One method's memorization score of every training example (higher = more memorized)."""

    method: str
    score: np.ndarray  # (n_train,) float
    cost_models: float
    seconds: float


@dataclass(frozen=True)
class InfluenceEstimate:
    """One method's highest-scored same-class (train, test) pairs (higher = more influential),
    at least a requested number per test example: columns ``PAIR_COLUMNS``."""

    method: str
    pairs: pd.DataFrame
    cost_models: float
    seconds: float
