"""Subset masks and training results from different runs are never combined."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DataCatalog, Version
from kedro.io.core import generate_timestamp
from kedro.io.memory_dataset import MemoryDataset
from kedro.pipeline import node

from longtail.hooks import TrainingProvenanceHook
from longtail.io import NpyDataset
from longtail.study import TRAINING_RESULTS, MismatchedInputs, training_provenance
from tests.test_study import run_study


def test_scoring_new_masks_against_old_models_is_refused(
    make_project: Callable[[str], Path], kedro_cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    root = make_project("provenance")
    run_study(root, pipeline_names=["ingestion", "sampling", "training"])
    run_study(root, pipeline_names=["sampling"], runtime_params={"sampling": {"seed": 7}})  # training not rerun
    masks_before = sorted((root / "data" / "05_model_input" / "subset_masks.npy").iterdir())
    result = kedro_cli(root, "run", "--env", "smoke", "--pipelines", "scoring")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "'score_memorization' would combine subset_masks (version 20" in message
    assert "train_correct (version 20" in message and "training_provenance (version 20" in message
    assert "subset_masks differ from what training recorded" in message
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert not (root / "data" / "07_model_output" / "memorization_scores.parquet").exists()
    assert sorted((root / "data" / "05_model_input" / "subset_masks.npy").iterdir()) == masks_before


def _score(subset_masks: np.ndarray, train_correct: np.ndarray) -> None: ...


def _train_on(subset_masks: np.ndarray) -> tuple[np.ndarray, dict]: ...


def _catalog(tmp_path: Path, provenance: dict, version: str) -> DataCatalog:
    """Versioned .npy datasets of masks and a training result, saving under ``version`` as a
    Kedro session's catalog does, and the recorded provenance."""
    datasets = {name: NpyDataset(filepath=str(tmp_path / f"{name}.npy"), version=Version(None, version))
                for name in ("subset_masks", "train_correct")}
    return DataCatalog({**datasets, "training_provenance": MemoryDataset(provenance)})


def _train(catalog: DataCatalog, hook: TrainingProvenanceHook, arrays: dict[str, np.ndarray], provenance: dict) -> None:
    """What a run's sampling and training nodes do to the catalog and the hook: sampling saves
    the masks, training reads them and saves its result with the provenance it recorded."""
    catalog.save("subset_masks", arrays["subset_masks"])
    catalog.save("train_correct", arrays["train_correct"])
    training = node(_train_on, "subset_masks", ["train_correct", "training_provenance"], name="train")
    hook.after_node_run(training, catalog, {"train_correct": arrays["train_correct"], "training_provenance": provenance})


def test_each_version_of_an_artefact_is_hashed_at_most_once(tmp_path: Path) -> None:
    """The versions training read and wrote are known from the fingerprints it recorded, so
    checking them hashes nothing: content handed in for the same versions is not hashed (a
    version's file never changes), and even a stand-in of other content passes. A new run hashes
    each input when first read; a version training did not record is hashed and refused."""
    rng = np.random.default_rng(0)
    arrays = {"subset_masks": rng.random((4, 50)) < 0.7, "train_correct": rng.random((4, 50)) < 0.5}
    others = {name: np.zeros(1) for name in TRAINING_RESULTS if name != "train_correct"}
    provenance = training_provenance(arrays["subset_masks"], "x", {"train_correct": arrays["train_correct"], **others})
    hook, scoring = TrainingProvenanceHook(), node(_score, ["subset_masks", "train_correct"], None, name="score")
    catalog = _catalog(tmp_path, provenance, generate_timestamp())
    hook.after_catalog_created(catalog)
    _train(catalog, hook, arrays, provenance)
    stand_in = {"subset_masks": ~arrays["subset_masks"], "train_correct": arrays["train_correct"]}
    for _ in range(3):
        hook.before_node_run(scoring, catalog, stand_in)
    hook.after_catalog_created(catalog)  # a new run: nothing known, each input hashed when first read
    loaded = {name: catalog.load(name) for name in arrays}
    hook.before_node_run(scoring, catalog, loaded)
    with pytest.raises(MismatchedInputs, match="subset_masks differ"):
        TrainingProvenanceHook().before_node_run(scoring, catalog, stand_in)  # first read of other content
    later = _catalog(tmp_path, provenance, generate_timestamp())  # a run that samples new masks, no training
    hook.after_catalog_created(later)
    later.save("subset_masks", ~arrays["subset_masks"])
    with pytest.raises(MismatchedInputs, match="subset_masks differ"):
        hook.before_node_run(scoring, later, {name: later.load(name) for name in arrays})
