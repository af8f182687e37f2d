"""The experiment identity: whatever changes a model's numbers is in it, nothing else."""

from __future__ import annotations

from dataclasses import replace

import pytest

from longtail.nets.config import TrainConfig, resolve_precision
from longtail.params import TrainingParams
from longtail.study import model_identity, train_config

BASE = TrainConfig(model="cnn", hidden_sizes=(64,), epochs=2, device="cpu", precision="fp32")


@pytest.mark.parametrize(
    "change",
    [
        {"device": "cuda"},
        {"models_in_memory": 7},
        {"compile": True},
        {"threads": 3},
        {"keep_models": True},
        {"record_epochs": True},
        {"hidden_sizes": (8, 8)},  # the cnn has fixed widths
    ],
)
def test_what_does_not_change_a_cnn_model_is_not_in_its_identity(change: dict) -> None:
    assert model_identity(replace(BASE, **change)) == model_identity(BASE)


@pytest.mark.parametrize(
    ("base", "change"),
    [
        (BASE, {"precision": "bf16"}),
        (BASE, {"lr": 0.2}),
        (BASE, {"seed": 1}),
        (BASE, {"augment": True}),
        (BASE, {"model": "resnet"}),
        (BASE, {"label_smoothing": 0.1}),
        (BASE, {"model": "airbench94"}),
        (BASE, {"schedule": "triangular"}),
        (BASE, {"tta": "mirror"}),
        (replace(BASE, model="mlp"), {"hidden_sizes": (8, 8)}),
    ],
)
def test_what_changes_a_model_is_in_its_identity(base: TrainConfig, change: dict) -> None:
    assert model_identity(replace(base, **change)) != model_identity(base)


def test_a_setting_added_later_leaves_the_identity_of_stored_shards_at_its_default() -> None:
    """label_smoothing came after stores existed; at its default (0, what the trainer computed
    before) it is not in the identity, so those stores stay valid."""
    assert "label_smoothing" not in model_identity(BASE) and "tta" not in model_identity(BASE)
    assert model_identity(replace(BASE, label_smoothing=0.1))["label_smoothing"] == 0.1


def test_auto_precision_resolves_by_device() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("bf16", "cpu") == "bf16"
    params = TrainingParams(model="mlp", hidden_sizes=(8,), epochs=1, batch_size=8, lr=0.1, momentum=0.0,
                            weight_decay=0.0, schedule="constant", seed=0, device="cpu")
    assert train_config(params).precision == "fp32"
    assert model_identity(train_config(params))["precision"] == "fp32"
