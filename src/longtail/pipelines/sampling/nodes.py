"""Sampling: which training examples each model sees.

Two schemes, both with the same per-model estimand (a model sees each example with
probability ``subset_ratio``), both stable as models are added (row t never changes):

* ``independent``: each model draws a subset of exactly round(ratio · n_train) examples,
  from a generator seeded with (seed, t) only.
* ``balanced``: models come in fixed blocks of ``block_size``; within a block every example
  is in exactly round(ratio · block_size) models (a column-wise argsort of seeded random keys,
  as LiRA does), so the in/out split of every example is as even as it can be. A model's
  subset size then varies around ratio · n_train (each example is in a given model with
  probability ratio, independently of the other examples).
"""

from __future__ import annotations

import logging

import numpy as np

from longtail.params import SamplingParams

logger = logging.getLogger(__name__)


def subset_mask(n_train: int, subset_size: int, seed: int, model_index: int) -> np.ndarray:
    """Model ``model_index``'s subset: ``subset_size`` examples drawn uniformly without
    replacement by a generator seeded with ``(seed, model_index)`` only, so a model's subset
    never changes when more models are asked for."""
    rng = np.random.default_rng([seed, model_index])
    mask = np.zeros(n_train, dtype=bool)
    mask[rng.choice(n_train, size=subset_size, replace=False)] = True
    return mask


def balanced_block(n_train: int, ratio: float, seed: int, block_size: int, block_index: int) -> np.ndarray:
    """Bool (block_size, n_train): block ``block_index`` of the balanced scheme. Every column
    holds exactly round(ratio · block_size) True, at rows drawn uniformly and independently of
    the other columns, from a generator seeded with (seed, block_size, block_index) only."""
    keys = np.random.default_rng([seed, block_size, block_index]).random((block_size, n_train))
    return keys.argsort(axis=0) < round(ratio * block_size)


def draw_subset_masks(train_labels: np.ndarray, sampling: SamplingParams) -> np.ndarray:
    """Bool (n_models, n_train): row t is model t's training subset (see the module docstring)."""
    n_train = len(train_labels)
    if sampling.scheme == "balanced":
        masks = _balanced_masks(n_train, sampling)
    else:
        masks = _independent_masks(n_train, sampling)
    logger.info(
        "drew %d %s subsets of %d training examples (mean size %.1f)",
        sampling.n_models, sampling.scheme, n_train, masks.sum(axis=1).mean() if masks.size else 0,
    )
    return masks


def _independent_masks(n_train: int, params: SamplingParams) -> np.ndarray:
    subset_size = round(params.subset_ratio * n_train)
    if not 0 < subset_size < n_train:
        raise ValueError(
            f"sampling.subset_ratio={params.subset_ratio} gives subsets of {subset_size} of "
            f"{n_train} training examples; allowed: a ratio leaving at least one example in and one out"
        )
    return np.stack([subset_mask(n_train, subset_size, params.seed, t) for t in range(params.n_models)])


def _balanced_masks(n_train: int, params: SamplingParams) -> np.ndarray:
    per_block = round(params.subset_ratio * params.block_size)
    if not 0 < per_block < params.block_size:
        raise ValueError(
            f"sampling.subset_ratio={params.subset_ratio} puts each example in {per_block} of "
            f"sampling.block_size={params.block_size} models; allowed: a ratio and block size leaving "
            "every example in at least one model of a block and out of at least one"
        )
    n_blocks = -(-params.n_models // params.block_size)
    blocks = [balanced_block(n_train, params.subset_ratio, params.seed, params.block_size, b) for b in range(n_blocks)]
    return np.concatenate(blocks)[: params.n_models]
