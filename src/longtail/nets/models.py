"""Plain single-model reference networks.

These are ordinary ``torch.nn`` modules. :mod:`longtail.nets.stacking` turns K of them
into one batched network, so every module used here must either be stackable
(``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Flatten``) or act on each
channel independently (activations, pooling, :class:`Residual`, :class:`Scale`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ARCHITECTURES = ("mlp", "cnn", "resnet")


class Residual(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Scale(nn.Module):
    """Multiply by a constant (ResNet-9 scales its logits by 1/8)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm follows) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


def mlp(input_shape: tuple[int, int, int], n_classes: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    """Flatten -> (Linear, ReLU) per hidden size -> Linear; the paper's MNIST net is 784-512-256-10."""
    widths = [input_shape[0] * input_shape[1] * input_shape[2], *hidden_sizes]
    layers: list[nn.Module] = [nn.Flatten()]
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], n_classes))


def cnn(input_shape: tuple[int, int, int], n_classes: int) -> nn.Sequential:
    """Three conv-BN-ReLU blocks (32, 64, 128 channels), two 2x2 max-pools, global max-pool, linear.

    Global pooling makes it work for any input of at least 4x4 (8x8 digits, 28x28, 32x32).
    """
    return nn.Sequential(
        conv_bn(input_shape[0], 32),
        nn.MaxPool2d(2),
        conv_bn(32, 64),
        nn.MaxPool2d(2),
        conv_bn(64, 128),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(128, n_classes),
    )


def resnet(input_shape: tuple[int, int, int], n_classes: int) -> nn.Sequential:
    """ResNet-9 as in fast CIFAR-10 training (Page 2018): 64-128(res)-256-512(res), max-pool, linear / 8."""
    return nn.Sequential(
        conv_bn(input_shape[0], 64),
        conv_bn(64, 128),
        nn.MaxPool2d(2),
        Residual(nn.Sequential(conv_bn(128, 128), conv_bn(128, 128))),
        conv_bn(128, 256),
        nn.MaxPool2d(2),
        conv_bn(256, 512),
        nn.MaxPool2d(2),
        Residual(nn.Sequential(conv_bn(512, 512), conv_bn(512, 512))),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(512, n_classes, bias=False),
        Scale(0.125),
    )


_BUILDERS: dict[str, Callable[[tuple[int, int, int], int, Sequence[int]], nn.Module]] = {
    "mlp": mlp,
    "cnn": lambda shape, n_classes, _hidden: cnn(shape, n_classes),
    "resnet": lambda shape, n_classes, _hidden: resnet(shape, n_classes),
}


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    n_classes: int,
    hidden_sizes: Sequence[int] = (512, 256),
) -> nn.Module:
    """A freshly initialised network mapping (B, C, H, W) images to (B, n_classes) logits.

    ``hidden_sizes`` only applies to ``mlp``; ``cnn`` and ``resnet`` have fixed widths.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return _BUILDERS[arch](tuple(input_shape), n_classes, tuple(hidden_sizes))
