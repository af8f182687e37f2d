"""Users' modules trained as a vmapped ensemble (torch.func) equal the same modules trained one by one.

Tolerance policy (as in test_ensemble.py): vmapped and plain kernels round differently, by
about 1e-7 per step; over the short runs below that stays far under the bounds (measured on
AMD Zen 4, 2 threads: at most 3.6e-7 in any probability, loss, weight or running statistic,
identical correctness), which leave room for other CPUs' kernels (AMX, AVX-512 paths) while a
wrong pairing of models, masks or statistics moves probabilities by ~0.1 (the negative control).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_wine

from longtail.nets.config import TrainConfig
from longtail.nets.ensemble import EnsembleResult, implementation, train_ensemble, train_one_by_one
from longtail.nets.functional import VmappedEnsemble, vmappable
from longtail.nets.models import InvalidModel, build_model, custom_model_signature
from longtail.params import InvalidParameters
from tests.conftest import checked_block

TESTS = Path(__file__).resolve().parents[1]
SHORT = TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", keep_models=True, device="cpu")
MIN_AGREEMENT, MAX_MEAN_DP, ATOL = 0.995, 1e-4, 1e-4


@pytest.fixture(autouse=True)
def custom_models_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = (data.images / 16).astype(np.float32)[:, None]
    return images[:1000], data.target[:1000], {"test": (images[1000:], data.target[1000:])}


@pytest.fixture(scope="module")
def wine():
    """A table as the table source gives it: one 1x1 channel per feature."""
    data = load_wine()
    rows = np.random.default_rng(0).permutation(len(data.target))
    features = data.data.astype(np.float32)[rows, :, None, None]
    labels = data.target[rows]
    return features[:140], labels[:140], {"test": (features[140:], labels[140:])}


def masks_for(n_models: int, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_models, n), dtype=bool)
    for row in masks:
        row[rng.choice(n, round(0.7 * n), replace=False)] = True
    return masks


def train(trainer, data, masks, config) -> EnsembleResult:
    images, labels, eval_sets = data
    return trainer(images, labels, masks, np.arange(len(masks)), config, int(labels.max()) + 1, eval_sets)


def differences(a: EnsembleResult, b: EnsembleResult) -> tuple[float, float]:
    """(share of equal test correctness, mean |difference| of the true-label probability)."""
    agreement = float((a.correct["test"] == b.correct["test"]).mean())
    return agreement, float(np.abs(a.true_prob["test"] - b.true_prob["test"]).mean())


def assert_same_models(a: EnsembleResult, b: EnsembleResult) -> None:
    agreement, mean_dp = differences(a, b)
    assert agreement >= MIN_AGREEMENT and mean_dp <= MAX_MEAN_DP, (agreement, mean_dp)
    np.testing.assert_allclose(a.epoch_loss, b.epoch_loss, rtol=1e-4)
    for state_a, state_b in zip(a.state_dicts, b.state_dicts, strict=True):
        assert state_a.keys() == state_b.keys()
        for name in state_a:
            torch.testing.assert_close(state_a[name], state_b[name], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize(("model", "dataset"), [("custom_models:two_layer", "digits"), ("custom_models:batch_norm", "wine")])
def test_the_vmapped_ensemble_matches_one_by_one_training(model, dataset, request, caplog) -> None:
    data = request.getfixturevalue(dataset)
    masks, config = masks_for(4, len(data[1])), replace(SHORT, model=model)
    assert implementation(config, data[0].shape[1:], int(data[1].max()) + 1, torch.device("cpu")) is VmappedEnsemble
    with caplog.at_level(logging.WARNING, logger="longtail.nets.functional"):
        vmapped = train(train_ensemble, data, masks, config)
    assert "cannot be vmapped" not in caplog.text
    one_by_one = train(train_one_by_one, data, masks, config)
    assert_same_models(vmapped, one_by_one)
    assert vmapped.true_prob["test"].mean() > 0.5  # the models learn
    # each model keeps its own running statistics (they differ between models)
    buffers = [name for name in vmapped.state_dicts[0] if "running" in name]
    assert bool(buffers) == (model == "custom_models:batch_norm")
    for name in buffers:
        assert not torch.allclose(vmapped.state_dicts[0][name], vmapped.state_dicts[1][name])


def test_swapping_two_models_masks_is_caught(digits) -> None:
    """Negative control: the comparison above fails when two models train on each other's subsets."""
    masks, config = masks_for(4, 1000), replace(SHORT, model="custom_models:two_layer", keep_models=False)
    one_by_one = train(train_one_by_one, digits, masks, config)
    swapped = train(train_ensemble, digits, masks[[1, 0, 2, 3]], config)
    assert differences(swapped, one_by_one)[1] > 10 * MAX_MEAN_DP
    per_model = np.abs(swapped.true_prob["test"] - one_by_one.true_prob["test"]).mean(axis=1)
    assert per_model[:2].min() > 100 * MAX_MEAN_DP and per_model[2:].max() <= MAX_MEAN_DP  # only the swapped pair moves


def test_a_model_depends_only_on_seed_and_model_id(wine) -> None:
    masks, config = masks_for(4, 140), replace(SHORT, model="custom_models:batch_norm", models_per_shard=4)
    together = train(train_ensemble, wine, masks, config)
    in_pairs = train(train_ensemble, wine, masks, replace(config, models_per_shard=2))
    assert_same_models(together, in_pairs)


def test_a_module_vmap_cannot_run_trains_one_by_one_with_one_log_line(digits, caplog) -> None:
    vmappable.cache_clear()
    masks, config = masks_for(4, 1000), replace(SHORT, model="custom_models:sign_gate", models_per_shard=2)
    with caplog.at_level(logging.WARNING, logger="longtail.nets.functional"):
        fallback = train(train_ensemble, digits, masks, config)
    lines = [r.getMessage() for r in caplog.records if "cannot be vmapped" in r.getMessage()]
    assert len(lines) == 1 and "custom_models:sign_gate" in lines[0] and "data-dependent control flow" in lines[0]
    reference = train(train_one_by_one, digits, masks, config)
    np.testing.assert_array_equal(fallback.true_prob["test"], reference.true_prob["test"])  # the same loop, bit for bit


def test_the_signature_tells_custom_modules_apart() -> None:
    def signature(model: str, shape=(13, 1, 1), n_classes=3) -> dict:
        return custom_model_signature(model, shape, n_classes)

    assert signature("mlp") == {}  # the built-ins keep their experiment ids
    assert signature("custom_models:two_layer") == signature("custom_models:two_layer")
    distinct = [
        signature("custom_models:two_layer"),
        signature("custom_models:digits_mlp"),  # same layers, other width
        signature("custom_models:batch_norm"),
        signature("custom_models:two_layer", n_classes=4),
    ]
    assert all(a != b for i, a in enumerate(distinct) for b in distinct[i + 1 :])
    assert "hidden.weight:(32, 13):torch.float32" in signature("custom_models:batch_norm")["model_signature"]["tensors"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("custom_models:nope", "'custom_models' has no attribute 'nope'"),
        ("no_such_package.models:build", "cannot import 'no_such_package.models'"),
        ("custom_models:NOT_CALLABLE", "is not callable (it is of type int)"),
        ("custom_models:no_arguments", "cannot be called as factory(input_shape, n_classes)"),
        ("vgg", "unknown model 'vgg'; expected one of mlp, cnn, resnet, or an import path"),
    ],
)
def test_bad_model_values_are_refused_with_what_is_allowed(model, message) -> None:
    values = {
        "model": model, "hidden_sizes": [8], "epochs": 1, "batch_size": 8, "lr": 0.1, "momentum": 0.9,
        "weight_decay": 0.0, "schedule": "constant", "seed": 0, "device": "cpu",
    }
    with pytest.raises(InvalidParameters) as error:
        checked_block("training", values)
    assert f"training.model={model!r}" in str(error.value) and message in str(error.value)
    with pytest.raises(InvalidModel, match="not a torch.nn.Module"):
        build_model("custom_models:not_a_module", (13, 1, 1), 3)
