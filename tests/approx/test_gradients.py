"""Per-example gradients against one backward pass per example."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from longtail.approx.gradients import KroneckerProjection, gradient_features
from longtail.nets.models import build_model
from tests.approx.conftest import loop_grads


def _batch(digits, n):
    x, y, _, _ = digits
    return torch.as_tensor(x[:n], dtype=torch.float64), torch.as_tensor(y[:n])


def test_linear_layer_factors_give_each_examples_exact_gradient(digits):
    x, y = _batch(digits, 12)
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, (16, 8)).double().eval()
    exact = loop_grads(model, x, y)
    features = gradient_features(model, x, y)
    np.testing.assert_allclose(features.squared_norms(), (exact**2).sum(1).numpy(), rtol=1e-10)
    other = gradient_features(model, x[:5], y[:5])
    np.testing.assert_allclose(features.dot(other).numpy(), (exact @ exact[:5].T).numpy(), rtol=1e-10, atol=1e-12)


def test_any_other_network_goes_through_vmap_exactly_without_projection(digits):
    x, y = _batch(digits, 6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    model = model.double().eval()  # a convolution and batch norm: not linear layers only
    exact = loop_grads(model, x, y)
    features = gradient_features(model, x, y, side=None)
    np.testing.assert_allclose(features.squared_norms(), (exact**2).sum(1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(features.dot(features).numpy(), (exact @ exact.T).numpy(), rtol=1e-9, atol=1e-12)


def test_kronecker_projection_keeps_inner_products_in_expectation():
    model = nn.Sequential(nn.Conv2d(2, 12, 3), nn.Flatten(), nn.Linear(12 * 4, 9)).double()
    shapes = {name: (p.shape[0], int(np.prod(p.shape[1:]))) for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(1)
    blocks = {name: torch.randn(2, *shape, generator=generator, dtype=torch.float64) for name, shape in shapes.items()}
    exact = sum((b[0] * b[1]).sum() for b in blocks.values()).item()
    estimates = []
    for seed in range(200):
        projected = KroneckerProjection(model, side=4, seed=seed)(blocks)
        estimates.append((projected[0] * projected[1]).sum().item())
    assert projected.shape[1] == 4 * 4 + 4 * 1 + 4 * 4 + 4 * 1  # every side longer than 4 cut to 4
    assert abs(np.mean(estimates) - exact) < 4 * np.std(estimates) / np.sqrt(len(estimates))
    whole = KroneckerProjection(model, side=None)(blocks)
    np.testing.assert_allclose((whole[0] * whole[1]).sum().item(), exact, rtol=1e-12)
