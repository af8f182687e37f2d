"""airbench94's recipe (longtail.nets.airbench): each piece against a known answer, and the
recipe trained stacked against the same models trained one by one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from longtail.nets.airbench import (
    AUGMENTATION,
    BIAS_LR_SCALE,
    DECOUPLING_BATCH,
    LOOKAHEAD_DECAY,
    WHITEN_BIAS_EPOCHS,
    Airbench94,
    Lookahead,
    patches,
    whitening_filters,
)
from longtail.nets.config import TrainConfig
from longtail.nets.data import DataStreams, tta_logits
from longtail.nets.ensemble import train_ensemble, train_one_by_one
from longtail.nets.loop import Shard, init_model, prepare_data, schedule_factor
from longtail.nets.models import build_model
from longtail.nets.stacking import StackedModels
from tests.nets.digits_split import digits_split, subset_masks

RECIPE = TrainConfig(
    model="airbench94", epochs=2, batch_size=16, lr=11.5, momentum=0.85, weight_decay=0.0153, label_smoothing=0.2,
    schedule="triangular", augment=True, tta="mirror_translate", device="cpu", keep_models=True,
)
SHAPE = (3, 16, 16)  # the smallest images airbench94 takes: keeps these tests fast on a CPU


def correlated_images(n: int = 40, seed: int = 0) -> torch.Tensor:
    """Images whose channels and neighbouring pixels are strongly correlated (smoothed noise mixed
    across channels), so that whitening has work to do; float64."""
    rng = np.random.default_rng(seed)
    noise = torch.as_tensor(rng.normal(size=(n, 3, 18, 18)))
    smooth = F.avg_pool2d(noise, 3, stride=1)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.3, 1.0, 0.1], [0.6, 0.2, 1.0]], dtype=torch.float64)
    return torch.einsum("dc,nchw->ndhw", mix, smooth) + 0.3


def test_whitened_patches_have_identity_second_moments() -> None:
    images = correlated_images()
    filters = whitening_filters(images, 2, eps=0.0)
    assert filters.shape == (24, 3, 2, 2)
    torch.testing.assert_close(filters[12:], -filters[:12])
    features = F.conv2d(images, filters[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(features.T @ features / len(features), torch.eye(12, dtype=torch.float64), atol=1e-9, rtol=0)
    raw = patches(images, 2)
    assert (raw.T @ raw / len(raw) - torch.eye(12, dtype=torch.float64)).abs().max() > 0.1  # they were not white before
    # with eps the second moments shrink to λ / (λ + eps), largest eigenvalue first
    eigenvalues = torch.linalg.eigvalsh(raw.T @ raw / len(raw)).flip(0)
    damped = F.conv2d(images, whitening_filters(images, 2, eps=0.05)[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(damped.T @ damped / len(damped), torch.diag(eigenvalues / (eigenvalues + 0.05)), atol=1e-9, rtol=0)


def test_each_model_whitens_with_its_own_subset() -> None:
    images = correlated_images(30).float()
    data = prepare_data(images.numpy(), np.arange(30) % 3, {}, 3, torch.device("cpu"), torch.float32)
    subsets = np.stack([np.arange(0, 20), np.arange(10, 30)])
    models = [init_model(RECIPE, i, data.input_shape, 3) for i in range(2)]
    Airbench94(RECIPE).init_models(models, data, Shard(np.arange(2), np.arange(2), subsets))
    for model, subset in zip(models, subsets):
        expected = whitening_filters(data.images[torch.as_tensor(subset)], 2)
        torch.testing.assert_close(model.whiten.weight.detach(), expected)
    assert not models[0].whiten.weight.requires_grad and not torch.allclose(models[0].whiten.weight, models[1].whiten.weight)


def test_the_optimizer_is_airbench_decoupled_nesterov_sgd() -> None:
    net = StackedModels([build_model("airbench94", SHAPE, 10) for _ in range(2)])
    optimizer = Airbench94(RECIPE).optimizer(net)
    biases, others = optimizer.param_groups
    kilostep = DECOUPLING_BATCH * (1 + 1 / (1 - RECIPE.momentum))
    assert others["peak_lr"] == pytest.approx(RECIPE.lr * RECIPE.batch_size / kilostep)
    assert biases["peak_lr"] == pytest.approx(BIAS_LR_SCALE * others["peak_lr"])
    for group in (biases, others):  # weight decay per step at the peak is the same for every group
        assert group["nesterov"] and group["momentum"] == RECIPE.momentum
        assert group["peak_lr"] * group["weight_decay"] == pytest.approx(RECIPE.weight_decay * RECIPE.batch_size / kilostep)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in norms}
    trained = {id(p) for p in others["params"]}
    assert id(net.net.whiten.weight) not in trained and not any(id(m.weight) in trained for m in norms)  # frozen
    assert id(net.net.whiten.bias) in trained and id(net.net.head.weight) in trained
    recipe = Airbench94(RECIPE)
    for epoch in range(WHITEN_BIAS_EPOCHS + 1):
        recipe.start_epoch(net, epoch)
        assert net.net.whiten.bias.requires_grad == (epoch < WHITEN_BIAS_EPOCHS)


def test_the_triangular_schedule_has_airbenchs_corners() -> None:
    total = 100
    factors = [schedule_factor("triangular", step, total) for step in range(total + 1)]
    assert factors[0] == pytest.approx(0.2) and factors[23] == pytest.approx(1.0) and factors[100] == pytest.approx(0.07)
    assert max(factors) == factors[23] and factors[10] == pytest.approx(0.2 + 0.8 * 10 / 23)


def test_lookahead_is_an_exponential_average_the_network_is_reset_to() -> None:
    net = nn.BatchNorm1d(3)
    start = net.weight.detach().clone()
    average, lookahead = start.clone(), Lookahead(net)
    for value, decay in [(2.0, 0.5), (-1.0, 0.25), (4.0, 0.9)]:
        with torch.no_grad():
            net.weight.fill_(value)
        lookahead.update(net, decay)
        average = decay * average + (1 - decay) * value
        torch.testing.assert_close(net.weight.detach(), average)
    assert net.num_batches_tracked.item() == 0  # integer state is left alone


def test_lookahead_runs_every_five_steps_and_training_ends_on_the_average() -> None:
    net, total = nn.Linear(1, 1, bias=False), 12
    recipe = Airbench94(RECIPE)
    with torch.no_grad():
        net.weight.fill_(0.0)
    recipe.start_epoch(net, 0)
    average = 0.0
    for step in range(total):
        with torch.no_grad():
            net.weight.add_(1.0)  # an optimizer step
        expected = net.weight.item()
        recipe.end_step(net, step, total)
        if (step + 1) % 5 == 0:
            decay = LOOKAHEAD_DECAY * ((step + 1) / total) ** 3
            average = decay * average + (1 - decay) * expected
            expected = average
        assert net.weight.item() == pytest.approx(expected if step + 1 < total else average)


def test_alternating_flip_flips_every_image_back_and_forth() -> None:
    subsets = np.stack([np.arange(0, 50), np.arange(25, 75)])
    streams = DataStreams(subsets, [1, 2], AUGMENTATION)
    flipped_by_example = []
    for _ in range(4):
        plan = streams.next_epoch(torch.device("cpu"))
        assert plan.offsets.min() >= 0 and plan.offsets.max() <= 2 * AUGMENTATION.pad
        by_example = torch.zeros(2, 75, dtype=torch.bool)
        by_example.scatter_(1, plan.order, plan.flips)
        flipped_by_example.append(by_example.gather(1, torch.as_tensor(subsets)))  # (2, 50): by subset position
    first = flipped_by_example[0]
    for epoch, flips in enumerate(flipped_by_example):
        assert torch.equal(flips, first ^ (epoch % 2 == 1))
    assert not torch.equal(first[0, 25:], first[1, :25])  # examples 25-49, held by both: each model tosses its own coins
    assert 0.3 < first[0].float().mean() < 0.7  # a fair coin per image in the first epoch


def test_tta_averages_the_views_airbench_averages() -> None:
    """With logits = the top-left pixel of each channel the views are known pixels: the mirror
    image's top-left is the top-right; both reflect-padded one-pixel translations start at (1, 1)
    and, mirrored, at (1, W-2)."""
    x = torch.rand(3, 2, 6, 7)

    def corner(images: torch.Tensor) -> torch.Tensor:
        return images[:, :, 0, 0]

    torch.testing.assert_close(tta_logits(corner, x, "none"), x[:, :, 0, 0])
    mirror = 0.5 * (x[:, :, 0, 0] + x[:, :, 0, -1])
    torch.testing.assert_close(tta_logits(corner, x, "mirror"), mirror)
    translated = 0.5 * (x[:, :, 1, 1] + x[:, :, 1, -2])
    torch.testing.assert_close(tta_logits(corner, x, "mirror_translate"), 0.5 * mirror + 0.5 * translated)


def test_correctness_is_judged_on_the_tta_prediction() -> None:
    images, labels, eval_sets = digits_split()
    config = TrainConfig(model="cnn", epochs=1, batch_size=64, lr=0.05, device="cpu", keep_models=True, tta="mirror")
    masks = subset_masks([300, 300])
    result = train_ensemble(images, labels, masks, np.arange(2), config, 10, eval_sets)
    data = prepare_data(images, labels, eval_sets, 10, torch.device("cpu"), torch.float32)
    test_images, test_labels = data.eval_sets["test"]
    for k, state in enumerate(result.state_dicts):
        model = build_model("cnn", (1, 8, 8), 10)
        model.load_state_dict(state)
        with torch.no_grad():
            plain = model.eval()(test_images).argmax(1) == test_labels
            mirrored = tta_logits(model, test_images, "mirror").argmax(1) == test_labels
        np.testing.assert_array_equal(result.correct["test"][k], mirrored.numpy())
        assert not np.array_equal(result.correct["test"][k], plain.numpy())  # the setting made a difference


def test_the_recipe_trains_stacked_models_as_it_trains_them_one_by_one() -> None:
    """Whitening per subset, Lookahead (8 steps: one update and the final one), the whitening bias
    freeze and alternating flips all act per model: two stacked models equal the same two trained
    alone. Stacked and plain convolutions round differently: measured 8e-7 in a weight, equal
    probabilities, against the 1e-5 allowed."""
    rng = np.random.default_rng(0)
    images, labels = rng.random((32, *SHAPE)).astype(np.float32), np.arange(32) % 4
    masks = subset_masks([16, 16], n=24)
    config = replace(RECIPE, epochs=WHITEN_BIAS_EPOCHS + 1, batch_size=8, models_in_memory=2)
    eval_sets = {"test": (images[24:], labels[24:])}
    stacked = train_ensemble(images[:24], labels[:24], masks, np.array([3, 8]), config, 4, eval_sets)
    alone = train_one_by_one(images[:24], labels[:24], masks, np.array([3, 8]), config, 4, eval_sets)
    np.testing.assert_allclose(stacked.true_prob["test"], alone.true_prob["test"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(stacked.epoch_loss, alone.epoch_loss, rtol=0, atol=1e-5)
    for a, b in zip(stacked.state_dicts, alone.state_dicts, strict=True):
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0)
    assert stacked.state_dicts[0]["whiten.bias"].abs().max() > 1e-4  # it learned early on
    assert not torch.allclose(stacked.state_dicts[0]["whiten.weight"], stacked.state_dicts[1]["whiten.weight"])
