"""Users' own models, as factories ``(input_shape, n_classes) -> nn.Module`` that the tests name
by import path (``custom_models:two_layer``, with this folder on ``sys.path``)."""

from __future__ import annotations

import math

import torch
from torch import nn

HIDDEN = 32


def two_layer(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """Flatten -> Linear -> ReLU -> Linear: an MLP written as a user would."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_classes))


def _mlp(input_shape: tuple[int, int, int], n_classes: int, widths: tuple[int, ...]) -> nn.Module:
    sizes = (math.prod(input_shape), *widths)
    layers = [module for w_in, w_out in zip(sizes[:-1], sizes[1:]) for module in (nn.Linear(w_in, w_out), nn.ReLU())]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(sizes[-1], n_classes))


def digits_mlp(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The MLP of benchmarks/training.py's digits-mlp preset (one hidden layer of 128)."""
    return _mlp(input_shape, n_classes, (128,))


def mnist_mlp(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The MLP of the mnist-mlp preset, the paper's 784-512-256-10."""
    return _mlp(input_shape, n_classes, (512, 256))


class TwoLayerWithBatchNorm(nn.Module):
    """A hand-written module (not a Sequential) with per-model running statistics."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_features, HIDDEN)
        self.norm = nn.BatchNorm1d(HIDDEN)
        self.out = nn.Linear(HIDDEN, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.hidden(x.flatten(1)))))


def batch_norm(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    return TwoLayerWithBatchNorm(math.prod(input_shape), n_classes)


class SignGate(nn.Module):
    """Python control flow on the data: vmap cannot run it, so it trains one model at a time."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.linear(x) if x.mean() > -100 else -self.linear(x)


def sign_gate(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    return SignGate(math.prod(input_shape), n_classes)


def not_a_module(input_shape: tuple[int, int, int], n_classes: int) -> str:
    return f"a network for {input_shape} and {n_classes} classes"


def no_arguments() -> nn.Module:
    return nn.Linear(1, 1)


NOT_CALLABLE = 3
