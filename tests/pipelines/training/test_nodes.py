"""The training node: refuses masks that do not fit the data, and fills the shard store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from longtail.params import SamplingParams, TrainingParams
from longtail.pipelines.training.nodes import train_subset_models
from longtail.shards import ShardStore
from longtail.study import STORE_FORMAT, experiment_identity, mismatched_inputs, train_config, training_data
from longtail.sources import load_source

TRAINING = TrainingParams.model_validate({
    "model": "mlp", "hidden_sizes": [8], "epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
    "weight_decay": 0.0, "schedule": "constant", "seed": 0, "device": "cpu", "models_per_shard": 2,
})
SAMPLING = SamplingParams(n_models=4, subset_ratio=0.7, seed=0)


@pytest.fixture(scope="module")
def splits() -> tuple[np.ndarray, ...]:
    digits = load_source("digits").train
    return digits.images[:100], digits.labels[:100], digits.images[100:140], digits.labels[100:140]


def test_masks_of_another_dataset_are_refused_by_shape(splits: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    masks = np.ones((4, 99), dtype=bool)
    with pytest.raises(ValueError, match=r"subset_masks has shape \(4, 99\).*expected shape \(n_models, 100\)"):
        train_subset_models(*splits, masks, tmp_path, TRAINING, SAMPLING)
    assert not list(tmp_path.rglob("shard-*"))


def test_outputs_cover_every_model_and_land_in_the_store(splits: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = np.stack([rng.permutation(100) < 70 for _ in range(4)])
    train_correct, train_prob, train_margin, test_correct, test_prob, test_margin, runs, summary, provenance = (
        train_subset_models(*splits, masks, tmp_path, TRAINING, SAMPLING)
    )
    assert train_correct.shape == train_prob.shape == train_margin.shape == (4, 100)
    assert test_correct.shape == test_prob.shape == test_margin.shape == (4, 40)
    assert train_margin.dtype == test_margin.dtype == np.float32
    assert (train_prob[train_correct] >= 1 / 10).all()  # the argmax class has at least 1/n_classes
    np.testing.assert_array_equal(train_margin > 0, train_correct)  # right exactly where the true logit leads
    assert runs["model_index"].tolist() == [0, 1, 2, 3]
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 2
    assert summary["models_trained_in_this_run"]["value"] == 4
    again = train_subset_models(*splits, masks, tmp_path, TRAINING, SAMPLING)
    assert again[7]["models_reused_from_store"]["value"] == 4
    np.testing.assert_array_equal(again[0], train_correct)
    np.testing.assert_array_equal(again[5], test_margin)
    assert json.loads(json.dumps(provenance)) == provenance == again[8]  # JSON-safe, same models
    arrays = {"subset_masks": masks, "train_correct": train_correct, "test_true_prob": test_prob, "train_margin": train_margin}
    assert mismatched_inputs(arrays, provenance) == []
    assert mismatched_inputs({**arrays, "subset_masks": masks[::-1]}, provenance) == ["subset_masks"]
    assert (tmp_path / provenance["experiment"]).is_dir()


def test_models_stored_in_an_older_format_are_named_and_trained_again(
    splits: tuple[np.ndarray, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store written before margins were recorded (format 2) is left alone, named, and its
    models trained again into the current format's folder."""
    masks = np.ones((4, 100), dtype=bool)
    identity = experiment_identity(training_data(*splits), train_config(TRAINING), SAMPLING)
    old = ShardStore(tmp_path, {**identity, "format": STORE_FORMAT - 1})
    with caplog.at_level("WARNING"):
        outputs = train_subset_models(*splits, masks, tmp_path, TRAINING, SAMPLING)
    assert outputs[7]["models_trained_in_this_run"]["value"] == 4
    assert f"{old.folder} holds models of this study in an older store format" in caplog.text
    assert list(old.folder.iterdir()) == [old.folder / "experiment.json"]
