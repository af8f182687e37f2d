"""Sampling: which training examples each model sees."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from longtail.params import SamplingParams, parse

logger = logging.getLogger(__name__)


def subset_mask(n_train: int, subset_size: int, seed: int, model_index: int) -> np.ndarray:
    """Model ``model_index``'s subset: ``subset_size`` examples drawn uniformly without
    replacement by a generator seeded with ``(seed, model_index)`` only, so a model's subset
    never changes when more models are asked for."""
    rng = np.random.default_rng([seed, model_index])
    mask = np.zeros(n_train, dtype=bool)
    mask[rng.choice(n_train, size=subset_size, replace=False)] = True
    return mask


def draw_subset_masks(train_labels: np.ndarray, sampling: dict[str, Any]) -> np.ndarray:
    """Bool (n_models, n_train): row t is model t's training subset of size round(ratio · n_train)."""
    params = parse(SamplingParams, sampling, "sampling")
    n_train = len(train_labels)
    subset_size = round(params.subset_ratio * n_train)
    if not 0 < subset_size < n_train:
        raise ValueError(
            f"sampling.subset_ratio={params.subset_ratio} gives subsets of {subset_size} of "
            f"{n_train} training examples; allowed: a ratio leaving at least one example in and one out"
        )
    masks = np.stack([subset_mask(n_train, subset_size, params.seed, t) for t in range(params.n_models)])
    logger.info("drew %d subsets of %d/%d training examples", params.n_models, subset_size, n_train)
    return masks
