"""Interoperability with the paper's released files: rescoring published model runs, and
exports in the released layouts (pairs npz, full matrix npz, float16 memory map)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longtail.estimate import Selection, influence, influence_matrix, memorization
from tests.test_study import catalog, run_study


@pytest.fixture
def published(project: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    masks = rng.random((200, 40)) < 0.7
    runs = {
        "trainset_mask": masks,
        "trainset_correctness": (rng.random((200, 40)) < 0.5 + 0.4 * masks),
        "testset_correctness": rng.random((200, 25)) < 0.5 + 0.3 * masks[:, :25],
        "trainset_labels": rng.integers(0, 10, 40),
    }
    (project / "data" / "01_raw").mkdir(parents=True, exist_ok=True)
    np.savez(project / "data" / "01_raw" / "published_runs.npz", **runs)
    return runs


def test_published_runs_are_rescored_and_exported(project: Path, published: dict[str, np.ndarray]) -> None:
    # the runs carry no test labels, so pairs cannot be matched by class
    run_study(project, pipeline_names=["rescoring"], runtime_params={"scoring": {"pairs": "all"}})
    data = catalog(project)
    assert not (project / "data" / "03_primary" / "examples.parquet").exists()  # a study's entries untouched
    assert not (project / "data" / "05_model_input" / "subset_masks.npy").exists()
    scores = data.load("rescoring.memorization_scores")
    expected = memorization(published["trainset_mask"], published["trainset_correctness"])
    np.testing.assert_allclose(scores["mem"], expected["mem"], equal_nan=True)
    np.testing.assert_array_equal(scores["label"], published["trainset_labels"])
    np.testing.assert_allclose(scores["mem_soft"], scores["mem"], equal_nan=True)

    pairs = data.load("rescoring.high_influence_pairs")
    assert set(pairs) == {"tr_idx", "tt_idx", "infl", "mem"}
    every = influence(published["trainset_mask"], published["testset_correctness"], threshold=0.15, top_k=2)
    mem = expected["mem"].to_numpy()
    every["mem"], every["mem_q"] = mem[every["train_index"]], expected["mem_q"].to_numpy()[every["train_index"]]
    selected = every[Selection("controlled", 0.15, 0.25, 0.1).pairs(every)]
    assert len(selected) > 0
    assert sorted(zip(pairs["tr_idx"], pairs["tt_idx"])) == sorted(zip(selected["train_index"], selected["test_index"]))

    exported = data.load("rescoring.influence_matrix")
    assert isinstance(exported, np.memmap) and exported.dtype == np.float16
    full = influence_matrix(published["trainset_mask"], published["testset_correctness"])
    np.testing.assert_allclose(exported.astype(np.float64), full, atol=1e-3, equal_nan=True)
    estimates = catalog(project).load("rescoring.published_estimates")
    assert set(estimates) == {"memorization", "influence"}
    by_class = catalog(project).load("rescoring.class_influence")  # test examples carry no label: empty classes
    assert set(by_class) == {f"{name}{c}" for c in range(10) for name in ("infl_matrix_class", "tr_classidx_", "tt_classidx_")}
    assert all(by_class[f"tt_classidx_{c}"].size == 0 for c in range(10))
    np.testing.assert_allclose(estimates["memorization"], mem, equal_nan=True)
    np.testing.assert_array_equal(estimates["influence"], np.asarray(exported))


def test_published_runs_with_wrong_shapes_are_refused(project: Path) -> None:
    (project / "data" / "01_raw").mkdir(parents=True, exist_ok=True)
    np.savez(
        project / "data" / "01_raw" / "published_runs.npz",
        trainset_mask=np.ones((5, 4), bool),
        trainset_correctness=np.ones((5, 3), bool),
        testset_correctness=np.ones((5, 2), bool),
    )
    with pytest.raises(ValueError, match=r"trainset_correctness \(5, 3\) \(expected \(5, 4\)\)"):
        run_study(project, pipeline_names=["rescoring"])


def test_same_class_pairs_need_labels(project: Path, published: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match=r"scoring.pairs='same_class' needs every example's label, but 0 training and 25 test"):
        run_study(project, pipeline_names=["rescoring"])
