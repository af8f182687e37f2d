"""Plain single-model reference networks.

These are ordinary ``torch.nn`` modules. :mod:`longtail.nets.stacking` turns K of them
into one batched network, so every module used here must either be stackable
(``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Flatten``) or act on each
channel independently (activations, pooling, :class:`Residual`, :class:`Scale`).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

#: ``package.module:factory``: a user's factory ``(input_shape, n_classes) -> nn.Module``.
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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


#: airbench94's widths and BatchNorm settings (Jordan 2024, arXiv 2404.00498; airbench 0.1.8's
#: ``hyp['net']``): its BatchNorm momentum 0.6 is PyTorch's 0.4 (they count it from the other end).
AIRBENCH_WIDTHS = (64, 256, 256)
AIRBENCH_BN_MOMENTUM, AIRBENCH_BN_EPS = 0.4, 1e-12
AIRBENCH_LOGIT_SCALE = 1 / 9
WHITEN_KERNEL = 2  # the whitening layer sees 2x2 patches
AIRBENCH_MIN_SIDE = 16  # whitening (-1), three 2x2 max-pools: the smallest side that leaves 1x1


def _airbench_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 convolution without bias whose first ``c_in`` filters start as the identity
    (airbench's partial Dirac initialisation)."""
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:c_in])
    return conv


def _airbench_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1 (frozen); only its bias learns."""
    norm = nn.BatchNorm2d(channels, eps=AIRBENCH_BN_EPS, momentum=AIRBENCH_BN_MOMENTUM)
    norm.weight.requires_grad_(False)
    return norm


def _airbench_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        _airbench_conv(c_in, c_out), nn.MaxPool2d(2), _airbench_norm(c_out), nn.GELU(),
        _airbench_conv(c_out, c_out), _airbench_norm(c_out), nn.GELU(),
    )


def airbench94(input_shape: tuple[int, int, int], n_classes: int) -> nn.Sequential:
    """airbench94's network (Jordan 2024): a frozen 2x2 patch-whitening convolution (2*C*4
    filters, set from the training images by ``longtail.nets.airbench``; only its bias learns,
    early on), GELU, three conv-pool-BN-GELU-conv-BN-GELU blocks, global max-pool, linear / 9."""
    channels, height, width = input_shape
    if min(height, width) < AIRBENCH_MIN_SIDE:
        raise ValueError(f"airbench94 needs images of at least {AIRBENCH_MIN_SIDE}x{AIRBENCH_MIN_SIDE} pixels, got {height}x{width}")
    whiten = nn.Conv2d(channels, 2 * channels * WHITEN_KERNEL**2, kernel_size=WHITEN_KERNEL, bias=True)
    whiten.weight.requires_grad_(False)
    with torch.no_grad():
        whiten.bias.zero_()
    widths = (whiten.out_channels, *AIRBENCH_WIDTHS)
    return nn.Sequential(OrderedDict(
        whiten=whiten,
        activation=nn.GELU(),
        **{f"block{i + 1}": _airbench_block(c_in, c_out) for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))},
        pool=nn.AdaptiveMaxPool2d(1),
        flatten=nn.Flatten(),
        head=nn.Linear(widths[-1], n_classes, bias=False),
        scale=Scale(AIRBENCH_LOGIT_SCALE),
    ))


_BUILDERS: dict[str, Callable[[tuple[int, int, int], int, Sequence[int]], nn.Module]] = {
    "mlp": mlp,
    "cnn": lambda shape, n_classes, _hidden: cnn(shape, n_classes),
    "resnet": lambda shape, n_classes, _hidden: resnet(shape, n_classes),
    "airbench94": lambda shape, n_classes, _hidden: airbench94(shape, n_classes),
}
#: The built-in models: a new one is a builder above and its name here.
ARCHITECTURES = tuple(_BUILDERS)
ALLOWED_MODELS = (
    f"one of {', '.join(ARCHITECTURES)}, or an import path 'package.module:factory' to a factory "
    "(input_shape, n_classes) -> torch.nn.Module"
)


class InvalidModel(ValueError):
    """``training.model`` names no built-in network and no usable factory."""


def is_builtin(model: str) -> bool:
    return model in ARCHITECTURES


def resolve_factory(path: str) -> Callable[..., Any]:
    """The callable at ``package.module:factory`` (attributes may be dotted), checked to take
    ``(input_shape, n_classes)``; ``InvalidModel`` naming the value and what is allowed."""
    if not IMPORT_PATH.match(path):
        raise InvalidModel(f"unknown model {path!r}; expected {ALLOWED_MODELS}")
    module_name, attribute = path.split(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidModel(f"model {path!r}: cannot import {module_name!r} ({error}); expected {ALLOWED_MODELS}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise InvalidModel(f"model {path!r}: {module_name!r} has no attribute {attribute!r}; expected {ALLOWED_MODELS}")
        target = getattr(target, part)
    if not callable(target):
        raise InvalidModel(f"model {path!r} is not callable (it is of type {type(target).__name__}); expected {ALLOWED_MODELS}")
    try:
        inspect.signature(target).bind((1, 1, 1), 2)
    except TypeError as error:
        raise InvalidModel(f"model {path!r} cannot be called as factory(input_shape, n_classes) ({error})") from None
    except ValueError:  # no signature to inspect (some builtins): calling it will tell
        pass
    return target


def check_model(model: str) -> str:
    """``model`` if it is a built-in name or resolves to a factory, else ``InvalidModel``."""
    if not is_builtin(model):
        resolve_factory(model)
    return model


def build_custom(path: str, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The module the factory at ``path`` builds for ``input_shape`` and ``n_classes``."""
    module = resolve_factory(path)(tuple(input_shape), n_classes)
    if not isinstance(module, nn.Module):
        raise InvalidModel(
            f"model {path!r} returned a {type(module).__name__}, not a torch.nn.Module; expected {ALLOWED_MODELS}"
        )
    return module


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    n_classes: int,
    hidden_sizes: Sequence[int] = (512, 256),
) -> nn.Module:
    """A freshly initialised network mapping (B, C, H, W) images to (B, n_classes) logits.

    ``arch`` is a built-in name or a factory's import path (:func:`resolve_factory`).
    ``hidden_sizes`` only applies to ``mlp``; ``cnn`` and ``resnet`` have fixed widths.
    """
    if is_builtin(arch):
        return _BUILDERS[arch](tuple(input_shape), n_classes, tuple(hidden_sizes))
    return build_custom(arch, input_shape, n_classes)


def custom_model_signature(model: str, input_shape: tuple[int, ...], n_classes: int) -> dict[str, Any]:
    """What identifies a user's model beyond its import path: the class of every submodule and
    the name, shape and dtype of every parameter and buffer (of a copy built on the CPU, under a
    forked RNG). Empty for the built-in networks, whose name says it all.

    Two factories that build different modules thus never share stored shards. An edit of a
    ``forward`` that changes none of these is not seen: give the factory a new name then.
    """
    if is_builtin(model):
        return {}
    with torch.random.fork_rng(devices=[]):
        module = build_custom(model, tuple(input_shape), n_classes)
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return {
        "model_signature": {
            "modules": [f"{name}:{type(m).__module__}.{type(m).__qualname__}" for name, m in module.named_modules()],
            "tensors": [f"{name}:{tuple(t.shape)}:{t.dtype}" for name, t in tensors],
        }
    }
