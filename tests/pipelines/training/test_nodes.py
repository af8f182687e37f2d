"""The training node: refuses masks that do not fit the data, and fills the shard store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from longtail.params import SamplingParams, TrainingParams
from longtail.pipelines.training.nodes import train_subset_models
from longtail.shards import ShardStore, fingerprint
from longtail.study import STORE_FORMAT, experiment_identity, mismatched_inputs, train_config, training_data
from longtail.sources import load_source

TRAINING = TrainingParams.model_validate({
    "model": "mlp", "hidden_sizes": [8], "epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
    "weight_decay": 0.0, "schedule": "constant", "seed": 0, "device": "cpu", "models_per_shard": 2,
    "precision": "fp32",  # named: auto is bf16 on some CPUs, and a test below pins the experiment id
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
    fingerprints = {name: fingerprint(array) for name, array in arrays.items()}
    assert mismatched_inputs(fingerprints, provenance) == []
    assert mismatched_inputs({**fingerprints, "subset_masks": fingerprint(masks[::-1])}, provenance) == ["subset_masks"]
    assert (tmp_path / provenance["experiment"]).is_dir()


@pytest.mark.parametrize(("epochs", "fits"), [(1, False), (40, True)])
def test_subset_models_that_do_not_fit_their_own_examples_are_reported_with_what_to_change(
    splits: tuple[np.ndarray, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture, epochs: int, fits: bool
) -> None:
    """1 epoch on 70-example subsets is 3 optimizer steps: the models fit a fraction of their own
    examples, and one warning says so, with the figure and what to change; 40 epochs fit them all."""
    training = TrainingParams.model_validate({**TRAINING.model_dump(), "epochs": epochs, "hidden_sizes": [32], "lr": 0.1})
    masks = np.stack([np.random.default_rng(t).permutation(100) < 70 for t in range(4)])
    with caplog.at_level(logging.WARNING, logger="longtail.pipelines.training.nodes"):
        train_correct, *_, summary, _ = train_subset_models(*splits, masks, tmp_path, training, SAMPLING)
    fit = summary["subset_models_subset_accuracy_mean"]["value"]
    assert fit == pytest.approx(np.mean([train_correct[t][masks[t]].mean() for t in range(4)]))
    warnings = [r.getMessage() for r in caplog.records if "their own training examples" in r.getMessage()]
    if fits:
        assert fit == 1.0 and warnings == []
    else:
        assert fit < 0.5 and len(warnings) == 1
        assert f"fit only {fit:.1%}" in warnings[0] and "training.min_subset_fit=0.99" in warnings[0]
        assert "3 optimizer steps (1 epochs of 3 batches of 32)" in warnings[0] and "raise training.epochs" in warnings[0]


def test_a_stored_shard_and_the_models_trained_together_are_sized_apart(
    splits: tuple[np.ndarray, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """models_per_shard sizes the store (files, claims, MLflow batches), models_in_memory the
    trainer's batched computations: one shard of 4 models, trained one model at a time."""
    masks = np.stack([np.random.default_rng(t).permutation(100) < 70 for t in range(4)])
    training = TrainingParams.model_validate(TRAINING.model_dump() | {"models_per_shard": 4, "models_in_memory": 1})
    with caplog.at_level(logging.INFO, logger="longtail.nets.ensemble"):
        train_subset_models(*splits, masks, tmp_path, training, SAMPLING)
    assert [path.name for path in tmp_path.rglob("shard-*.npz")] == ["shard-0000000-0000004.npz"]
    trained = [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "longtail.nets.ensemble"]
    assert trained == [f"trained {k}/4 models" for k in range(1, 5)]


def test_a_store_written_under_the_single_shard_setting_is_resumed(splits: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    """Before the split, models_per_shard (here 2) sized both the shards and the models trained
    together. Its store keeps its folder (the experiment id below is the one computed then) and
    is reused whole under the new settings, shards of 2 and all."""
    masks = np.stack([np.random.default_rng(t).permutation(100) < 70 for t in range(4)])
    before = train_subset_models(*splits, masks, tmp_path, TRAINING, SAMPLING)
    assert before[8]["experiment"] == "9f21f458a488b974"  # margins (store format 3) changed the id, the split did not
    training = TrainingParams.model_validate(TRAINING.model_dump() | {"models_per_shard": "auto", "models_in_memory": 3})
    resumed = train_subset_models(*splits, masks, tmp_path, training, SAMPLING)
    assert resumed[7]["models_reused_from_store"]["value"] == 4
    for old, new in zip(before[:6], resumed[:6]):
        np.testing.assert_array_equal(old, new)


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
