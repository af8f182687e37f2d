"""Subset masks: fixed size, uniform, and stable as models are added."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import hypergeom

from longtail.params import SamplingParams
from longtail.pipelines.sampling.nodes import draw_subset_masks

LABELS = np.zeros(200, dtype=np.int64)


def test_each_row_has_the_rounded_subset_size() -> None:
    masks = draw_subset_masks(LABELS, SamplingParams(n_models=30, subset_ratio=0.7, seed=0))
    assert masks.shape == (30, 200) and masks.dtype == np.bool_
    assert (masks.sum(axis=1) == 140).all()
    assert len({row.tobytes() for row in masks}) == 30


def test_more_models_keep_the_first_rows() -> None:
    few = draw_subset_masks(LABELS, SamplingParams(n_models=5, subset_ratio=0.7, seed=7))
    many = draw_subset_masks(LABELS, SamplingParams(n_models=50, subset_ratio=0.7, seed=7))
    assert np.array_equal(many[:5], few)
    other = draw_subset_masks(LABELS, SamplingParams(n_models=5, subset_ratio=0.7, seed=8))
    assert not np.array_equal(other, few)


def test_membership_is_uniform_over_examples() -> None:
    masks = draw_subset_masks(LABELS, SamplingParams(n_models=2000, subset_ratio=0.3, seed=0))
    rate = masks.mean(axis=0)
    # Each column is Binomial(2000, 0.3)/2000: sd ≈ 0.0102, so 5 sd bounds all 200 columns.
    assert np.all(np.abs(rate - 0.3) < 0.052)


def test_a_ratio_leaving_nothing_out_is_refused() -> None:
    with pytest.raises(ValueError, match="subset_ratio=0.999"):
        draw_subset_masks(np.zeros(10), SamplingParams(n_models=3, subset_ratio=0.999, seed=0))


BALANCED = SamplingParams(n_models=250, subset_ratio=0.7, seed=0, scheme="balanced", block_size=100)


def test_balanced_blocks_put_every_example_in_the_same_number_of_models() -> None:
    masks = draw_subset_masks(LABELS, BALANCED)
    assert masks.shape == (250, 200)
    for block in (masks[:100], masks[100:200]):
        assert (block.sum(axis=0) == 70).all()  # round(0.7 x 100) in every column
    # the partial last block is not balanced, but each entry is still in with probability 0.7
    assert masks[200:].sum(axis=0).min() < masks[200:].sum(axis=0).max()
    # rows are independent Bernoulli(0.7) draws over 200 columns: sd 6.5, so sizes vary
    sizes = masks.sum(axis=1)
    assert abs(sizes.mean() - 140) < 1 and sizes.std() > 3


def test_balanced_masks_keep_the_first_rows_and_depend_on_the_seed() -> None:
    few = draw_subset_masks(LABELS, BALANCED.model_copy(update={"n_models": 30}))
    many = draw_subset_masks(LABELS, BALANCED)
    assert np.array_equal(many[:30], few)
    assert not np.array_equal(draw_subset_masks(LABELS, BALANCED.model_copy(update={"seed": 1})), many)
    independent = draw_subset_masks(LABELS, BALANCED.model_copy(update={"scheme": "independent"}))
    assert not np.array_equal(independent, many)


def test_membership_in_a_block_is_independent_across_examples() -> None:
    """Within a block, the models two examples share follow the hypergeometric law of two
    independent uniform 70-of-100 draws (mean 49, variance 4.45); a design that ties examples
    together (e.g. contiguous windows of one permutation) gives a far larger variance. Over
    19,900 pairs of columns both moments are within 5% here."""
    block = draw_subset_masks(LABELS, BALANCED.model_copy(update={"n_models": 100})).astype(np.int64)
    shared = (block.T @ block)[np.triu_indices(200, k=1)]
    law = hypergeom(100, 70, 70)
    assert shared.mean() == pytest.approx(law.mean(), rel=0.05)
    assert shared.var() == pytest.approx(law.var(), rel=0.05)


def test_a_block_leaving_nothing_out_is_refused() -> None:
    with pytest.raises(ValueError, match="sampling.block_size=2"):
        draw_subset_masks(LABELS, BALANCED.model_copy(update={"block_size": 2, "subset_ratio": 0.9}))
