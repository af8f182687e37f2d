"""Interoperability with the paper's released files: rescoring published model runs, and
exports in the released layouts (pairs npz, full matrix npz, float16 memory map)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longtail.estimate import influence, influence_matrix, memorization
from tests.test_study import catalog, run_study


@pytest.fixture
def published(project: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    masks = rng.random((60, 40)) < 0.7
    runs = {
        "trainset_mask": masks,
        "trainset_correctness": (rng.random((60, 40)) < 0.5 + 0.4 * masks),
        "testset_correctness": rng.random((60, 25)) < 0.5 + 0.3 * masks[:, :25],
        "trainset_labels": rng.integers(0, 10, 40),
    }
    (project / "data" / "01_raw").mkdir(parents=True, exist_ok=True)
    np.savez(project / "data" / "01_raw" / "published_runs.npz", **runs)
    return runs


def test_published_runs_are_rescored_and_exported(project: Path, published: dict[str, np.ndarray]) -> None:
    run_study(project, pipeline_names=["rescoring"])
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
    every = influence(published["trainset_mask"], published["testset_correctness"], threshold=0.15)
    mem = expected["mem"].to_numpy()
    selected = every[mem[every["train_index"]] >= 0.25]
    assert sorted(zip(pairs["tr_idx"], pairs["tt_idx"])) == sorted(zip(selected["train_index"], selected["test_index"]))

    exported = data.load("rescoring.influence_matrix")
    assert isinstance(exported, np.memmap) and exported.dtype == np.float16
    full = influence_matrix(published["trainset_mask"], published["testset_correctness"])
    np.testing.assert_allclose(exported.astype(np.float64), full, atol=1e-3, equal_nan=True)
    estimates = catalog(project).load("rescoring.published_estimates")
    assert set(estimates) == {"memorization", "influence"}
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
