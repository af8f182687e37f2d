"""The approximations' test data: a few hundred sklearn digits, two short full-data runs of a
small MLP (one CPU thread: the tests run beside others), and brute-force per-example
gradients computed one example at a time with ``torch.autograd.grad``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from longtail.approx.runs import FullRuns, train_full_runs
from longtail.nets import TrainConfig

N_TRAIN, N_TEST = 300, 60
CONFIG = TrainConfig(hidden_sizes=(32, 16), epochs=2, batch_size=32, device="cpu", threads=1)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), images (N, 1, 8, 8) in [0, 1]."""
    data = load_digits()
    images = (data.images / 16).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:N_TRAIN], order[N_TRAIN : N_TRAIN + N_TEST]
    return images[train], data.target[train], images[test], data.target[test]


@pytest.fixture(scope="session")
def runs(digits) -> FullRuns:
    """Two runs of two epochs, weights kept at the start and after each epoch."""
    x, y, _, _ = digits
    return train_full_runs(x, y, CONFIG, 2, seed=3, checkpoint_epochs=[0, 1, 2])


def loop_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, parameters): each example's flattened loss gradient, one backward pass per example."""
    params = list(model.parameters())
    rows = []
    for i in range(len(x)):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows).double()
