"""The subset-model families by name: fz-n is the exact estimate from the first n models, each
family's names, costs and seconds, and the long tables they are saved as."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longtail.approx.methods import (
    METHODS,
    RUN_METHODS,
    SUBSET_FAMILIES,
    FullRunPlan,
    SubsetModels,
    estimates_mem,
    full_run_estimates,
    subset_model_estimates,
)
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
from longtail.executors import TrainingData
from tests.approx.conftest import CONFIG as RUNS_CONFIG


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


def test_full_run_methods_share_one_set_of_runs(digits) -> None:
    """The proxies and attributions asked for, from runs of the study's configuration, each
    with the cost of the training it reads; methods of the other kind are refused."""
    data = TrainingData(*digits, n_classes=10)
    plan = FullRunPlan(n_runs=2, seed=3, checkpoint_epochs=(1, 2))
    mem, infl = full_run_estimates(
        data, RUNS_CONFIG, ["forgetting", "nn_input", "tracin"], plan, per_test=4, subset_model_seconds=1.0, subset_ratio=0.7
    )
    assert [e.method for e in mem] == ["forgetting"] and [e.method for e in infl] == ["nn_input", "tracin"]
    assert mem[0].score.shape == (len(digits[1]),)
    assert mem[0].cost_models >= 2 / 0.7  # two full-data runs of every epoch, at least
    assert infl[1].pairs.groupby("test_index").size().max() == 4
    assert full_run_estimates(data, RUNS_CONFIG, [], plan, per_test=4, subset_model_seconds=1.0, subset_ratio=0.7) == ([], [])
    with pytest.raises(ValueError, match=r"unknown full-run methods \['fz'\]; allowed: learning_speed, forgetting"):
        full_run_estimates(data, RUNS_CONFIG, ["fz"], plan, per_test=4, subset_model_seconds=1.0, subset_ratio=0.7)
    assert METHODS[:3] == ("fz", "margin", "eb") and set(RUN_METHODS) <= set(METHODS)
