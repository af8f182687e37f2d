"""Per-example gradients of a trained network's loss, kept in a form whose inner products and
norms are cheap (:class:`GradientFeatures`).

Two ways to the same gradients:

* a network whose parameters all sit in ``nn.Linear`` layers (the MLP): the gradient of
  example i's loss with respect to a layer's weight and bias is the outer product δᵢ [aᵢ, 1]ᵀ of
  the loss's gradient with respect to the layer's output and the layer's input (Goodfellow
  2015, "Efficient per-example gradient computations"), both read from one ordinary forward and
  backward pass, about as fast as a training step (materialising every example's gradient with
  vmap is ten times slower on a CPU). Inner products are then exact and cheap:
  ⟨gᵢ, gⱼ⟩ = Σ_layers (δᵢ·δⱼ)(aᵢ·aⱼ), as fast as projecting to a few thousand numbers would be.
* any other network: ``torch.func.vmap`` over ``torch.func.grad``, a few full gradients at a
  time, each randomly projected as in LoGra (Choe et al. 2024, "What is Your Data Worth to
  GPT?"): a parameter's gradient G viewed as a (rows, cols) matrix becomes ``P_rowsᵀ G P_cols``
  with Gaussian P of variance 1/side, so that E[⟨Pg, Pg'⟩] = ⟨g, g'⟩ while the matrices stay
  small (a dense projection of the 784-512-256-10 MLP's 535,818 numbers to 2,048 would take
  4.4 GB). A side no longer than ``side`` is kept as it is, so ``side=None`` is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

#: One block of a chunk of per-example gradients: (δ (B, rows), a (B, cols)) whose outer
#: products are the gradients, or the gradients themselves as (B, rows, cols).
Block = tuple[torch.Tensor, torch.Tensor] | torch.Tensor

CHUNK = 512  # examples per pass (vmap holds this many full gradients: keep it small there)
VMAP_CHUNK = 32


def _linear_layers(model: nn.Module) -> dict[str, nn.Linear] | None:
    """The model's layers by name if every parameter belongs to an ``nn.Linear``, else None."""
    owners = {name: m for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))}
    return owners if all(isinstance(m, nn.Linear) for m in owners.values()) else None


def per_example_blocks(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0
) -> Iterator[dict[str, Block]]:
    """The gradient of each example's cross-entropy loss with respect to ``model``'s
    parameters (weights fixed, in whatever mode ``model`` is), by block, a chunk at a time."""
    if _linear_layers(model) is not None:
        for start in range(0, len(images), CHUNK):
            yield _factored(model, images[start : start + CHUNK], labels[start : start + CHUNK], label_smoothing)
        return
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0), label_smoothing=label_smoothing)

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    for start in range(0, len(images), VMAP_CHUNK):
        grads = per_example(params, images[start : start + VMAP_CHUNK], labels[start : start + VMAP_CHUNK])
        yield {name: g.flatten(2) if g.ndim > 2 else g.unsqueeze(-1) for name, g in grads.items()}


def _factored(model: nn.Module, x: torch.Tensor, y: torch.Tensor, label_smoothing: float) -> dict[str, Block]:
    """(δ, [a, 1]) of every linear layer from one forward and backward pass of the summed loss
    (each example's loss depends on its own row only, so δ's rows are per-example gradients)."""
    layers = _linear_layers(model)
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def record(_module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            inputs[name], outputs[name] = args[0].detach(), output

        return record

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y, reduction="sum", label_smoothing=label_smoothing)
            deltas = torch.autograd.grad(loss, [outputs[name] for name in layers])
    finally:
        for handle in handles:
            handle.remove()
    blocks = {}
    for (name, layer), delta in zip(layers.items(), deltas):
        a = inputs[name]
        if a.ndim != 2:
            raise ValueError(f"layer {name!r} sees inputs of shape {tuple(a.shape)}; per-example factors need (batch, features)")
        if layer.bias is not None:
            a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
        blocks[name] = (delta.detach(), a)
    return blocks


class GradientFeatures:
    """Every example's loss gradient as blocks (L, R) with ⟨gᵢ, gⱼ⟩ = Σ_blocks (Lᵢ·Lⱼ)(Rᵢ·Rⱼ):
    a linear layer's exact (δ, [a, 1]); on the vmap path the projected gradient (F, 1)."""

    def __init__(self, blocks: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks[0][0])

    def squared_norms(self) -> np.ndarray:
        """(n,) float64: ‖gᵢ‖²."""
        return sum(left.double().pow(2).sum(1) * right.double().pow(2).sum(1) for left, right in self.blocks).numpy()

    def dot(self, other: GradientFeatures, rows: slice = slice(None)) -> torch.Tensor:
        """(len(rows), len(other)): ⟨gᵢ, g'ⱼ⟩ for the examples ``rows`` of this set against all of ``other``."""
        return sum((left[rows] @ left_o.T) * (right[rows] @ right_o.T) for (left, right), (left_o, right_o) in zip(self.blocks, other.blocks))


def gradient_features(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, side: int | None = 32, seed: int = 0, label_smoothing: float = 0.0
) -> GradientFeatures:
    """Every example's loss gradient: exact factors for a network of linear layers, else the
    Kronecker projection with ``side`` (None: exact, (n, parameters) floats)."""
    chunks = list(per_example_blocks(model, images, labels, label_smoothing=label_smoothing))
    if _linear_layers(model) is not None:
        return GradientFeatures([(torch.cat([c[name][0] for c in chunks]), torch.cat([c[name][1] for c in chunks])) for name in chunks[0]])
    projection = KroneckerProjection(model, side, seed)
    projected = torch.cat([projection(chunk) for chunk in chunks])
    return GradientFeatures([(projected, torch.ones(len(projected), 1, dtype=projected.dtype))])


class KroneckerProjection:
    """A fixed random map of a network's full per-example gradients (the vmap path's blocks)
    to ``dim`` numbers that keeps inner products in expectation (module docstring). ``side``:
    the largest projected row or column count of any parameter; None keeps gradients whole."""

    def __init__(self, model: nn.Module, side: int | None, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.factors, self.dim = {}, 0
        for name, p in model.named_parameters():
            rows, cols = p.shape[0], math.prod(p.shape[1:])
            left, right = _gaussian(rows, side, p.dtype, generator), _gaussian(cols, side, p.dtype, generator)
            self.factors[name] = (left, right)
            self.dim += (rows if left is None else side) * (cols if right is None else side)

    def __call__(self, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, dim): the projections of a chunk of (B, rows, cols) per-example gradients."""
        parts = []
        for name, (left, right) in self.factors.items():
            g = blocks[name] if right is None else blocks[name] @ right
            parts.append((g if left is None else left.T @ g).flatten(1))
        return torch.cat(parts, 1)


def _gaussian(size: int, side: int | None, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor | None:
    """(size, side) N(0, 1/side) entries, or None (identity) when no projection shortens it."""
    if side is None or size <= side:
        return None
    return (torch.randn(size, side, generator=generator, dtype=torch.float64) / math.sqrt(side)).to(dtype)
