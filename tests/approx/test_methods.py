"""The subset-model families by name: fz-n is the exact estimate from the first n models, each
family's names, costs and seconds, and the long tables they are saved as."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longtail.approx.methods import SUBSET_FAMILIES, SubsetModels, estimates_mem, subset_model_estimates
from longtail.approx.result import InfluenceEstimate, MemorizationEstimate
from longtail.approx.tables import (
    INFLUENCE_COLUMNS,
    MEMORIZATION_COLUMNS,
    influence_estimates,
    influence_table,
    memorization_estimates,
    memorization_table,
)
from longtail.estimate import influence, memorization


@pytest.fixture(scope="module")
def models() -> SubsetModels:
    rng = np.random.default_rng(0)
    masks = rng.random((30, 50)) < 0.7
    train_margin = rng.normal(np.where(masks, 2.0, 0.5), 1.5).astype(np.float32)
    test_margin = rng.normal(0.5, 1.5, (30, 20)).astype(np.float32)
    labels = (rng.integers(0, 3, 50), rng.integers(0, 3, 20))
    return SubsetModels(masks, train_margin > 0, test_margin > 0, train_margin, test_margin, labels)


def test_every_family_at_every_count_the_study_has(models: SubsetModels) -> None:
    mem, infl = subset_model_estimates(models, ["fz", "margin", "eb"], [4, 10, 31], per_test=3, subset_model_seconds=0.5, max_block_mb=8)
    names = [f"{family}-{n}" for n in (4, 10) for family in ("fz", "margin", "eb")]  # 31 > 30 models: skipped
    assert [e.method for e in mem] == names and [e.method for e in infl] == names
    assert [e.cost_models for e in mem] == [4.0] * 3 + [10.0] * 3
    assert all(e.seconds >= e.cost_models * 0.5 for e in [*mem, *infl])
    assert all(estimates_mem(name) for name in names) and not estimates_mem("fz") and not estimates_mem("forgetting")


def test_fz_n_is_the_exact_estimate_from_the_first_n_models(models: SubsetModels) -> None:
    mem, infl = subset_model_estimates(models, ["fz"], [10], per_test=3, subset_model_seconds=0.0, max_block_mb=8)
    np.testing.assert_array_equal(mem[0].score, memorization(models.masks[:10], models.train_correct[:10])["mem"])
    exact = influence(models.masks[:10], models.test_correct[:10], top_k=3, labels=models.labels)
    np.testing.assert_array_equal(infl[0].pairs["score"], exact["infl"])
    np.testing.assert_array_equal(infl[0].pairs["train_index"], exact["train_index"])


def test_unknown_families_are_refused_with_the_allowed_ones(models: SubsetModels) -> None:
    with pytest.raises(ValueError, match=r"unknown subset-model families \['lira'\]; allowed: fz, margin, eb"):
        subset_model_estimates(models, ["lira"], [4], per_test=3, subset_model_seconds=0.0, max_block_mb=8)
    assert list(SUBSET_FAMILIES) == ["fz", "margin", "eb"]


def test_the_tables_hold_the_estimates_and_give_them_back(models: SubsetModels) -> None:
    mem, infl = subset_model_estimates(models, ["fz", "eb"], [6], per_test=2, subset_model_seconds=0.25, max_block_mb=8)
    table = memorization_table(mem)
    assert list(table.columns) == MEMORIZATION_COLUMNS and len(table) == 2 * 50
    back = memorization_estimates(table, 50)
    for before, after in zip(mem, back):
        assert (after.method, after.cost_models, after.seconds) == (before.method, before.cost_models, before.seconds)
        np.testing.assert_array_equal(after.score, before.score)
    pairs = influence_table(infl)
    assert list(pairs.columns) == INFLUENCE_COLUMNS
    for before, after in zip(infl, influence_estimates(pairs)):
        pd.testing.assert_frame_equal(after.pairs, before.pairs.reset_index(drop=True))
        assert (after.cost_models, after.seconds) == (before.cost_models, before.seconds)
    with pytest.raises(ValueError, match=r"named more than once: \['a'\]"):
        memorization_table([MemorizationEstimate("a", np.zeros(2), 1, 1)] * 2)
    with pytest.raises(ValueError, match="does not score each of the 50"):
        memorization_estimates(table[table["index"] != 7], 50)
    with pytest.raises(ValueError, match=r"lack columns \['score'\]"):
        influence_table([InfluenceEstimate("a", pd.DataFrame({"train_index": [0], "test_index": [0]}), 1, 1)])
