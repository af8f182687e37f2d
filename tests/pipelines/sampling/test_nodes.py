"""Subset masks: fixed size, uniform, and stable as models are added."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.pipelines.sampling.nodes import draw_subset_masks

LABELS = np.zeros(200, dtype=np.int64)


def test_each_row_has_the_rounded_subset_size() -> None:
    masks = draw_subset_masks(LABELS, {"n_models": 30, "subset_ratio": 0.7, "seed": 0})
    assert masks.shape == (30, 200) and masks.dtype == np.bool_
    assert (masks.sum(axis=1) == 140).all()
    assert len({row.tobytes() for row in masks}) == 30


def test_more_models_keep_the_first_rows() -> None:
    few = draw_subset_masks(LABELS, {"n_models": 5, "subset_ratio": 0.7, "seed": 7})
    many = draw_subset_masks(LABELS, {"n_models": 50, "subset_ratio": 0.7, "seed": 7})
    assert np.array_equal(many[:5], few)
    other = draw_subset_masks(LABELS, {"n_models": 5, "subset_ratio": 0.7, "seed": 8})
    assert not np.array_equal(other, few)


def test_membership_is_uniform_over_examples() -> None:
    masks = draw_subset_masks(LABELS, {"n_models": 2000, "subset_ratio": 0.3, "seed": 0})
    rate = masks.mean(axis=0)
    # Each column is Binomial(2000, 0.3)/2000: sd ≈ 0.0102, so 5 sd bounds all 200 columns.
    assert np.all(np.abs(rate - 0.3) < 0.052)


def test_a_ratio_leaving_nothing_out_is_refused() -> None:
    with pytest.raises(ValueError, match="subset_ratio=0.999"):
        draw_subset_masks(np.zeros(10), {"n_models": 3, "subset_ratio": 0.999, "seed": 0})
