"""The approximation nodes on a synthetic study: the methods the study has models for, their
tables, and the measure, where fz-n from all the models is the reference itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longtail.approx.measure import AGREEMENT_COLUMNS
from longtail.approx.tables import INFLUENCE_COLUMNS, MEMORIZATION_COLUMNS
from longtail.figures import approximation_figure
from longtail.pipelines.approximation.nodes import (
    estimate_from_subset_models,
    measure_approximations,
    summarize_approximations,
)
from tests.conftest import checked_block

N_MODELS, N_TRAIN, N_TEST = 40, 60, 24
SCORING = checked_block("scoring", {"influence_threshold": 0.15, "memorization_threshold": 0.25, "top_k": 3, "max_block_mb": 8})


@pytest.fixture(scope="module")
def study() -> dict[str, np.ndarray]:
    """Training examples 0-9 are memorized (right only when trained on); test example j < 10
    leans on training example j (its class-mate)."""
    rng = np.random.default_rng(0)
    masks = rng.random((N_MODELS, N_TRAIN)) < 0.7
    memorized = np.arange(N_TRAIN) < 10
    train_margin = rng.normal(np.where(memorized & ~masks, -2.0, 3.0), 1.0).astype(np.float32)
    test_margin = rng.normal(2.0, 1.0, (N_MODELS, N_TEST))
    test_margin[:, :10] = rng.normal(np.where(masks[:, :10], 2.0, -2.0), 1.0)
    test_margin = test_margin.astype(np.float32)
    train_labels, test_labels = np.arange(N_TRAIN) % 3, np.arange(N_TEST) % 3
    train_labels[:10] = test_labels[:10]
    return {"subset_masks": masks, "train_correct": train_margin > 0, "test_correct": test_margin > 0,
            "train_margin": train_margin, "test_margin": test_margin, "train_labels": train_labels, "test_labels": test_labels}


def _approximation(**values: object):
    return checked_block("approximation", {"methods": ["fz", "margin", "eb"], "model_counts": [8, 40, 100], "proxy_runs": 1,
                                           "per_test": 5, "seed": 0, **values})


@pytest.fixture(scope="module")
def tables(study) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = ("subset_masks", "train_correct", "test_correct", "train_margin", "test_margin", "train_labels", "test_labels")
    return estimate_from_subset_models(*(study[k] for k in keys), 0.5, _approximation(), SCORING)


def test_every_family_at_every_count_the_study_has(tables) -> None:
    memorization, influence = tables
    names = ["fz-8", "margin-8", "eb-8", "fz-40", "margin-40", "eb-40"]  # 100 > 40 models: skipped
    assert list(memorization.columns) == MEMORIZATION_COLUMNS and list(influence.columns) == INFLUENCE_COLUMNS
    assert memorization["method"].unique().tolist() == names and influence["method"].unique().tolist() == names
    assert memorization.groupby("method")["index"].apply(list).map(lambda i: i == list(range(N_TRAIN))).all()
    assert influence.groupby(["method", "test_index"]).size().max() == 5
    assert memorization.groupby("method", sort=False)["cost_models"].first().tolist() == [8.0] * 3 + [40.0] * 3
    assert (memorization["seconds"] >= memorization["cost_models"] * 0.5).all()


def test_all_the_models_reproduce_the_reference_and_margins_find_it_with_few(study, tables) -> None:
    keys = ("subset_masks", "train_correct", "test_correct", "train_labels", "test_labels")
    table = measure_approximations(*tables, *(study[k] for k in keys), SCORING)
    assert list(table.columns) == AGREEMENT_COLUMNS and len(table) == 12
    rows = table.set_index(["method", "target"])
    assert rows.loc[("fz-40", "memorization"), ["precision_at_r_mem", "roc_auc", "mae"]].tolist() == [1.0, 1.0, 0.0]
    # R_pairs keeps only the pairs of memorized examples, so other pairs may outrank some at
    # |R_pairs| even for the reference itself; none at 10 |R_pairs|
    assert rows.loc[("fz-40", "influence"), "pair_recall_at_r_pairs"] >= 0.5
    assert rows.loc[("fz-40", "influence"), "pair_recall_at_10_r_pairs"] == 1.0
    assert table["r_mem"].iloc[0] == 10 and table["r_pairs"].iloc[0] >= 8
    assert rows.loc[("margin-8", "memorization"), "precision_at_r_mem"] >= 0.9  # margins well apart: 8 models suffice
    metrics = summarize_approximations(table)
    assert metrics["fz-40_precision_at_r_mem"] == {"value": 1.0, "step": 0}
    assert "fz-40_pair_recall_at_r_pairs" in metrics
    assert len(approximation_figure(table).axes) == 2


def test_a_study_without_the_counts_asked_for_yields_empty_tables(study) -> None:
    keys = ("subset_masks", "train_correct", "test_correct", "train_margin", "test_margin", "train_labels", "test_labels")
    memorization, influence = estimate_from_subset_models(*(study[k] for k in keys), 0.5, _approximation(model_counts=[100]), SCORING)
    assert memorization.empty and influence.empty
    assert list(memorization.columns) == MEMORIZATION_COLUMNS
    table = measure_approximations(memorization, influence, *(study[k] for k in ("subset_masks", "train_correct", "test_correct", "train_labels", "test_labels")), SCORING)
    assert table.empty and list(table.columns) == AGREEMENT_COLUMNS
    assert len(approximation_figure(table).axes) == 1  # a figure saying so
