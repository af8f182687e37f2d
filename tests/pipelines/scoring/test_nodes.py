"""Scoring nodes: same-class pairs, the reported selection carrying its cut-offs, the headline
metrics, and the reporting figure refusing a table selected with other cut-offs."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from longtail.estimate import Selection, influence, influence_matrix
from longtail.params import ReportingParams, ScoringParams
from longtail.pipelines.export.nodes import class_influence
from longtail.pipelines.reporting.nodes import plot_influence_pairs
from longtail.pipelines.scoring.nodes import (
    published_pairs,
    report_pairs,
    score_influence,
    score_memorization,
    summarize_scores,
)

N_MODELS, N_TRAIN, N_TEST = 200, 40, 20
SCORING = ScoringParams(influence_threshold=0.15, memorization_threshold=0.25, top_k=2, max_block_mb=1, fdr=0.1)
REPORTING = ReportingParams(
    grid_levels=(0.0, 0.5), grid_classes=3, grid_per_class=1, influence_rows=2, influence_per_row=2, seed=0
)


@pytest.fixture(scope="module")
def study() -> dict[str, object]:
    """Two classes; training example i (i < 10) is memorized and helps test example i, of its
    own class, by 0.5; test examples 10 … 19 are right in every model (constant columns)."""
    rng = np.random.default_rng(0)
    masks = rng.random((N_MODELS, N_TRAIN)) < 0.7
    train_correct = rng.random((N_MODELS, N_TRAIN)) < 0.3 + 0.6 * masks
    test_correct = np.ones((N_MODELS, N_TEST), dtype=bool)
    test_correct[:, :10] = rng.random((N_MODELS, 10)) < 0.2 + 0.5 * masks[:, :10]
    labels = {"train": np.arange(N_TRAIN) % 2, "test": np.arange(N_TEST) % 2}
    examples = pd.concat(
        [pd.DataFrame({"split": s, "index": np.arange(len(y)), "label": y, "noisy": False}) for s, y in labels.items()],
        ignore_index=True,
    )
    scores = score_memorization(masks, train_correct, train_correct.astype(np.float32), examples)
    return {"masks": masks, "test_correct": test_correct, "examples": examples, "scores": scores, "labels": labels}


def _pairs(study, **scoring) -> pd.DataFrame:
    return score_influence(study["masks"], study["test_correct"], study["scores"], study["examples"], SCORING.model_copy(update=scoring))


def test_same_class_pairs_are_the_same_class_subset_of_all_pairs(study) -> None:
    same, every = _pairs(study), _pairs(study, pairs="all")
    train_label, test_label = study["labels"]["train"], study["labels"]["test"]
    assert (train_label[same["train_index"]] == test_label[same["test_index"]]).all()
    assert (train_label[every["train_index"]] != test_label[every["test_index"]]).any()
    assert set(same["test_index"]) <= set(range(10))  # constant test columns give nothing
    assert same.attrs["n_tests"] == 2 * 20 * 5  # per class: 20 training examples x 5 varying test examples
    key = ["train_index", "test_index"]
    hits = every[every["infl"] >= 0.15]
    same_hits = hits[train_label[hits["train_index"]] == test_label[hits["test_index"]]]
    assert set(map(tuple, same_hits[key].to_numpy())) <= set(map(tuple, same[key].to_numpy()))
    np.testing.assert_allclose(same["mem"], study["scores"]["mem"].to_numpy()[same["train_index"]])


@pytest.mark.parametrize("mode", ["controlled", "paper"])
def test_reported_pairs_carry_their_selection(study, mode) -> None:
    pairs = _pairs(study)
    reported = report_pairs(pairs, SCORING.model_copy(update={"selection": mode}))
    rule = Selection(mode, 0.15, 0.25, 0.1)
    assert len(reported) == rule.pairs(pairs).sum() > 0
    carried = {"selection": mode, "influence_threshold": 0.15, "memorization_threshold": 0.25, "fdr": 0.1, "pairs": "same_class"}
    assert reported.attrs["selection"] == carried
    assert (reported[list(carried)] == pd.Series(carried)).all().all()
    assert (reported["infl"] >= 0.15).all() and (reported["mem"] >= 0.25).all()
    if mode == "controlled":
        assert (reported["q_value"] <= 0.1).all() and (reported["mem_q"] <= 0.1).all()
    planted = {(i, i) for i in range(10)}
    assert planted <= set(zip(reported["train_index"], reported["test_index"]))  # 0.5 with 200 models


def test_controlled_is_stricter_than_paper(study) -> None:
    pairs = _pairs(study, top_k=5)
    controlled, paper = (report_pairs(pairs, SCORING.model_copy(update={"selection": m})) for m in ("controlled", "paper"))
    keys = [set(map(tuple, table[["train_index", "test_index"]].to_numpy())) for table in (controlled, paper)]
    assert keys[0] <= keys[1]


def test_summary_and_published_layout_follow_the_reported_pairs(study) -> None:
    pairs = _pairs(study)
    reported = report_pairs(pairs, SCORING)
    metrics = summarize_scores(study["scores"], pairs, reported, SCORING)
    assert metrics["pairs_reported"]["value"] == len(reported)
    rule = Selection("controlled", 0.15, 0.25, 0.1)
    assert metrics["examples_memorized"]["value"] == rule.memorized(study["scores"]["mem"], study["scores"]["mem_q"]).sum() > 0
    layout = published_pairs(reported)
    np.testing.assert_array_equal(layout["tr_idx"], reported["train_index"])
    np.testing.assert_array_equal(layout["tt_idx"], reported["test_index"])


def test_the_influence_figure_refuses_a_table_selected_with_other_cut_offs(study) -> None:
    reported = report_pairs(_pairs(study), SCORING)
    images = np.zeros((N_TRAIN, 1, 4, 4), dtype=np.float32)
    args = (images, images[:N_TEST], study["labels"]["train"], study["labels"]["test"], reported, study["examples"])
    plot_influence_pairs(*args, SCORING, REPORTING)
    with pytest.raises(ValueError, match=r"selected with .*'influence_threshold': 0.15.* now ask for .*0.3"):
        plot_influence_pairs(*args, SCORING.model_copy(update={"influence_threshold": 0.3}), REPORTING)
    with pytest.raises(ValueError, match="rerun `kedro run --pipelines scoring,reporting`"):
        plot_influence_pairs(*args, SCORING.model_copy(update={"selection": "paper"}), REPORTING)


def test_class_influence_has_the_papers_per_class_layout(study) -> None:
    arrays = class_influence(study["masks"], study["test_correct"], study["examples"], SCORING)
    assert set(arrays) == {f"{name}{c}" for c in (0, 1) for name in ("infl_matrix_class", "tr_classidx_", "tt_classidx_")}
    full = influence_matrix(study["masks"], study["test_correct"])
    for c in (0, 1):
        rows, cols = arrays[f"tr_classidx_{c}"], arrays[f"tt_classidx_{c}"]
        np.testing.assert_array_equal(rows, np.flatnonzero(study["labels"]["train"] == c))
        # float32 storage of float64 estimates: rounding below 1e-7
        np.testing.assert_allclose(arrays[f"infl_matrix_class{c}"], full[np.ix_(rows, cols)], atol=1e-7)
    same = influence(study["masks"], study["test_correct"], top_k=1, labels=(study["labels"]["train"], study["labels"]["test"]))
    best = same.groupby("test_index")["infl"].max()
    for z, value in best.items():
        c = study["labels"]["test"][z]
        column = np.flatnonzero(arrays[f"tt_classidx_{c}"] == z)[0]
        assert arrays[f"infl_matrix_class{c}"][:, column].max() == pytest.approx(value, abs=1e-7)


def test_class_influence_keeps_to_the_memory_bound() -> None:
    """One class of 2,000 × 400 examples: its scan's working memory stays within about twice
    scoring.max_block_mb, and grows with it."""
    rng = np.random.default_rng(1)
    masks, test_correct = rng.random((64, 2000)) < 0.7, rng.random((64, 400)) < 0.5
    examples = pd.concat([
        pd.DataFrame({"split": "train", "index": np.arange(2000), "label": 0, "noisy": False}),
        pd.DataFrame({"split": "test", "index": np.arange(400), "label": 0, "noisy": False}),
    ])
    output_mb = 2000 * 400 * 4 / 2**20  # the float32 class matrix itself

    def peak_mb(max_block_mb: float) -> float:
        tracemalloc.start()
        class_influence(masks, test_correct, examples, SCORING.model_copy(update={"max_block_mb": max_block_mb}))
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return peak - output_mb

    assert peak_mb(1) < 2 and peak_mb(256) > 8  # measured 1.3 and 16 MB
