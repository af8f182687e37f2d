import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from longtail.nets.data import PAD, crop_and_flip
from longtail.nets.ensemble import EnsembleResult, TrainConfig, lr_at, train_ensemble, train_one_by_one
from longtail.nets.models import build_model

N_TRAIN = 1200
# Batched and plain kernels round differently (~1e-7). That stays tiny unless a near-tie in
# a max-pool window flips its winner, which changes one gradient entry by O(1e-3); such
# flips become likely with many small steps, so the runs below are kept short.
SMALL = TrainConfig(
    hidden_sizes=(32,), epochs=2, batch_size=64, lr=0.02, momentum=0.9, weight_decay=5e-4, keep_models=True
)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits as (N, 1, 8, 8) images in [0, 1], split into train and test."""
    data = load_digits()
    images = (data.images / 16).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return images[train], data.target[train], {"test": (images[test], data.target[test])}


def subset_masks(sizes, n=N_TRAIN, seed=1):
    rng = np.random.default_rng(seed)
    masks = np.zeros((len(sizes), n), dtype=bool)
    for row, size in zip(masks, sizes):
        row[rng.choice(n, size, replace=False)] = True
    return masks


def train(trainer, digits, masks, config, model_ids=None, **kwargs):
    images, labels, eval_sets = digits
    ids = np.arange(len(masks)) if model_ids is None else model_ids
    return trainer(images, labels, masks, ids, config, 10, eval_sets, **kwargs)


def assert_same_models(a: EnsembleResult, b: EnsembleResult, atol=1e-4):
    np.testing.assert_array_equal(a.correct["test"], b.correct["test"])
    np.testing.assert_allclose(a.true_prob["test"], b.true_prob["test"], atol=atol)
    np.testing.assert_allclose(a.epoch_loss, b.epoch_loss, rtol=1e-4)
    for state_a, state_b in zip(a.state_dicts, b.state_dicts, strict=True):
        assert state_a.keys() == state_b.keys()
        for name in state_a:
            torch.testing.assert_close(state_a[name], state_b[name], atol=atol, rtol=1e-4)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ensemble_matches_one_by_one(digits, arch):
    masks = subset_masks([800] * 4)
    config = replace(SMALL, model=arch, schedule="cosine")
    ensemble = train(train_ensemble, digits, masks, config)
    assert ensemble.correct["test"].shape == ensemble.true_prob["test"].shape == (4, 597)
    assert ensemble.epoch_loss.shape == (4, 2)
    assert ensemble.true_prob["test"].dtype == np.float32
    assert_same_models(ensemble, train(train_one_by_one, digits, masks, config))


def test_models_depend_only_on_seed_and_model_id(digits):
    masks = subset_masks([700] * 5)
    ids = np.array([3, 17, 4, 8, 99])
    config = replace(SMALL, models_per_shard=5)
    together = train(train_ensemble, digits, masks, config, ids)
    in_pairs = train(train_ensemble, digits, masks, replace(config, models_per_shard=2), ids)
    assert_same_models(together, in_pairs, atol=1e-5)
    alone = train(train_ensemble, digits, masks[3:4], config, ids[3:4])
    assert_same_models(alone, train(train_ensemble, digits, masks[3:4], config, ids[3:4]), atol=0)
    np.testing.assert_allclose(alone.true_prob["test"], together.true_prob["test"][3:4], atol=1e-5)
    other_seed = train(train_ensemble, digits, masks, replace(config, seed=1), ids)
    assert not np.allclose(other_seed.true_prob["test"], together.true_prob["test"])


def test_mixed_subset_sizes_keep_row_order(digits):
    masks = subset_masks([900, 600, 900, 1199, 600])
    ensemble = train(train_ensemble, digits, masks, SMALL)
    assert ensemble.epoch_loss.shape == (5, 2)
    assert_same_models(ensemble, train(train_one_by_one, digits, masks, SMALL))
    for row in (1, 3):  # groups are trained by size, results come back in row order
        alone = train(train_ensemble, digits, masks[[row]], SMALL, np.array([row]))
        np.testing.assert_allclose(alone.true_prob["test"][0], ensemble.true_prob["test"][row], atol=1e-5)


def test_progress_and_log_per_shard(digits, caplog):
    calls = []
    with caplog.at_level(logging.INFO, logger="longtail.nets.ensemble"):
        train(train_ensemble, digits, subset_masks([500] * 3 + [400]), replace(SMALL, epochs=1, models_per_shard=2),
              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (3, 4), (4, 4)]
    assert len([r for r in caplog.records if "models/s" in r.getMessage()]) == 3


def test_state_dicts_load_into_plain_models(digits):
    result = train(train_ensemble, digits, subset_masks([300] * 2), replace(SMALL, model="cnn", epochs=1))
    model = build_model("cnn", (1, 8, 8), 10)
    model.load_state_dict(result.state_dicts[1])
    assert not torch.equal(model[0][0].weight, result.state_dicts[0]["0.0.weight"])


def test_mlp_ensemble_learns_digits(digits):
    config = TrainConfig(hidden_sizes=(128,), epochs=8, batch_size=64, lr=0.05, schedule="linear")
    result = train(train_ensemble, digits, subset_masks([840] * 3), config)
    assert result.correct["test"].mean(1).min() > 0.9
    assert (result.epoch_loss[:, -1] < result.epoch_loss[:, 0] / 5).all()


def test_lr_schedules():
    config = TrainConfig(lr=0.2)
    assert lr_at(config, 7, 10) == 0.2
    assert lr_at(replace(config, schedule="cosine"), 5, 10) == pytest.approx(0.1)
    assert lr_at(replace(config, schedule="linear"), 0, 10) == 0.2
    assert lr_at(replace(config, schedule="linear"), 9, 10) == pytest.approx(0.02)


def test_crop_and_flip():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    centre = torch.full((2, 2), PAD)
    torch.testing.assert_close(crop_and_flip(images, centre, torch.tensor([False, True])),
                               torch.stack([images[0], images[1].flip(-1)]))
    shifted = crop_and_flip(images, torch.tensor([[PAD + 1, PAD - 2]] * 2), torch.tensor([False, False]))
    torch.testing.assert_close(shifted[:, :, :-1, 2:], images[:, :, 1:, :-2])
    assert (shifted[:, :, -1] == 0).all() and (shifted[:, :, :, :2] == 0).all()


def test_augmented_ensemble_matches_one_by_one():
    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 3, 32, 32), dtype=np.float32), rng.integers(0, 4, 64)
    masks = subset_masks([40] * 2, n=64)
    config = replace(SMALL, model="cnn", epochs=1, batch_size=16, augment=True)
    runs = [f(images, labels, masks, np.arange(2), config, 4, {"train": (images, labels)})
            for f in (train_ensemble, train_one_by_one)]
    np.testing.assert_allclose(runs[0].true_prob["train"], runs[1].true_prob["train"], atol=1e-4)


def test_invalid_inputs(digits):
    with pytest.raises(ValueError, match="'vgg'"):
        TrainConfig(model="vgg")
    with pytest.raises(ValueError, match="'step'"):
        TrainConfig(schedule="step")
    masks = subset_masks([10, 0])
    with pytest.raises(ValueError, match="non-empty"):
        train(train_ensemble, digits, masks, SMALL)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_recording_epochs_changes_no_model_and_ends_with_the_final_evaluation(digits, arch):
    masks = subset_masks([700, 500, 700])  # two shards' sizes: recorded epochs follow the input rows
    config = replace(SMALL, model=arch)
    plain = train(train_ensemble, digits, masks, config)
    recorded = train(train_ensemble, digits, masks, replace(config, record_epochs=True))
    assert plain.epoch_correct is None and plain.epoch_true_prob is None
    assert_same_models(plain, recorded, atol=0)  # BatchNorm statistics untouched by evaluation in eval mode
    assert recorded.epoch_correct["test"].shape == recorded.epoch_true_prob["test"].shape == (3, SMALL.epochs, 597)
    np.testing.assert_array_equal(recorded.epoch_correct["test"][:, -1], recorded.correct["test"])
    np.testing.assert_array_equal(recorded.epoch_true_prob["test"][:, -1], recorded.true_prob["test"])
    one_by_one = train(train_one_by_one, digits, masks, replace(config, record_epochs=True))
    np.testing.assert_allclose(one_by_one.epoch_true_prob["test"], recorded.epoch_true_prob["test"], atol=1e-4)
