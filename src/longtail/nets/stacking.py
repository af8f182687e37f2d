"""Turn K plain networks into one network that runs them side by side.

Two activation layouts carry the K models through a stacked network:

* image layout ``(B, K*C, H, W)``: model k owns channels ``k*C:(k+1)*C``. A grouped
  convolution (``groups=K``) and ``BatchNorm2d(K*C)`` then act on each model separately,
  and channel-wise modules (ReLU, pooling, residual sums) need no change at all.
* feature layout ``(K, B, F)``: linear layers are batched matrix products.

``nn.Flatten`` switches from the first layout to the second. The models never interact:
every parameter, gradient and BatchNorm statistic belongs to exactly one of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from longtail.nets.loop import StateDict, preferred_memory_format
from longtail.nets.models import Residual, Scale

#: Modules that act on each channel (or element) independently and so work unchanged.
CHANNELWISE = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
    Scale,
    Residual,
    nn.Sequential,
)


class _BatchedLinear(torch.autograd.Function):
    """K linear maps x[k] @ weight[k].T + bias[k].

    Autograd's own baddbmm backward computes the weight gradient transposed, as
    ``bmm(x^T, grad)``, and then copies it into the weight's layout; computing
    ``bmm(grad^T, x)`` directly makes a training step ~1.6x faster on CPU.

    Under autocast (any device) the products run in the autocast dtype; the backward pass
    reruns under the forward's autocast state (what ``torch.amp.custom_bwd`` does for one
    fixed device type), so its products see operands of one dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.autocast = _autocast_state(x.device.type)
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias, x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        device_type, enabled, dtype = ctx.autocast
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):
            grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
            grad_weight = torch.bmm(grad.transpose(1, 2), x)
        accumulate = torch.promote_types(grad.dtype, weight.dtype)  # bf16 grads summed in float32
        grad_bias = grad.sum(1, keepdim=True, dtype=accumulate) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias


def _autocast_state(device_type: str) -> tuple[str, bool, torch.dtype]:
    """(device type, enabled, dtype) of the autocast in force for ``device_type``."""
    return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


class StackedLinear(nn.Module):
    """K independent ``nn.Linear`` layers: (K, B, in) -> (K, B, out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, out, in), nn.Linear's orientation
        self.bias = None if bias is None else nn.Parameter(bias.unsqueeze(1))  # (K, 1, out)

    @classmethod
    def stack(cls, layers: Sequence[nn.Linear]) -> StackedLinear:
        bias = None if layers[0].bias is None else torch.stack([m.bias.detach() for m in layers])
        return cls(torch.stack([m.weight.detach() for m in layers]), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BatchedLinear.apply(x, self.weight, self.bias)

    def unstack(self) -> list[StateDict]:
        states: list[StateDict] = [{"weight": w} for w in self.weight.detach()]
        if self.bias is not None:
            for state, b in zip(states, self.bias.detach()):
                state["bias"] = b.squeeze(0)
        return states


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors])


def _split(state: StateDict, k: int) -> list[StateDict]:
    """Split every K*C-long tensor of ``state`` into K per-model chunks; scalars are shared."""
    chunks = {name: t.chunk(k) if t.dim() else [t] * k for name, t in state.items()}
    return [{name: parts[i].clone() for name, parts in chunks.items()} for i in range(k)]


class StackedConv2d(nn.Conv2d):
    """K independent ``nn.Conv2d`` layers as one grouped convolution in the image layout."""

    def __init__(self, layers: Sequence[nn.Conv2d]) -> None:
        first, k = layers[0], len(layers)
        super().__init__(
            k * first.in_channels,
            k * first.out_channels,
            first.kernel_size,
            stride=first.stride,
            padding=first.padding,
            dilation=first.dilation,
            groups=k * first.groups,
            bias=first.bias is not None,
            padding_mode=first.padding_mode,
            device="meta",
        )
        self.n_models = k
        self.weight = nn.Parameter(_cat([m.weight for m in layers]))
        if first.bias is not None:
            self.bias = nn.Parameter(_cat([m.bias for m in layers]))

    def unstack(self) -> list[StateDict]:
        return _split(self.state_dict(), self.n_models)


class StackedBatchNorm2d(nn.BatchNorm2d):
    """K independent ``nn.BatchNorm2d`` layers as one over K*C channels (statistics stay per model)."""

    def __init__(self, layers: Sequence[nn.BatchNorm2d]) -> None:
        first, k = layers[0], len(layers)
        super().__init__(
            k * first.num_features,
            eps=first.eps,
            momentum=first.momentum,
            affine=first.affine,
            track_running_stats=first.track_running_stats,
            device="meta",
        )
        self.n_models = k
        for name, _ in [*self.named_parameters(recurse=False)]:
            setattr(self, name, nn.Parameter(_cat([getattr(m, name) for m in layers])))
        for name, buffer in [*self.named_buffers(recurse=False)]:
            parts = [getattr(m, name) for m in layers]
            setattr(self, name, _cat(parts) if buffer.dim() else parts[0].detach().clone())

    def unstack(self) -> list[StateDict]:
        return _split(self.state_dict(), self.n_models)


class StackedFlatten(nn.Module):
    """``nn.Flatten`` for K models: image layout (B, K*C, H, W) -> feature layout (K, B, C*H*W)."""

    def __init__(self, n_models: int) -> None:
        super().__init__()
        self.n_models = n_models

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.n_models, -1).transpose(0, 1)


def _stack_flatten(layers: Sequence[nn.Flatten]) -> StackedFlatten:
    if (layers[0].start_dim, layers[0].end_dim) != (1, -1):
        raise TypeError("only nn.Flatten() with default dimensions can be stacked")
    return StackedFlatten(len(layers))


_STACKERS: dict[type[nn.Module], Callable[[Sequence[nn.Module]], nn.Module]] = {
    nn.Linear: StackedLinear.stack,
    nn.Conv2d: StackedConv2d,
    nn.BatchNorm2d: StackedBatchNorm2d,
    nn.Flatten: _stack_flatten,
}


def _stack_leaf(layers: Sequence[nn.Module]) -> nn.Module:
    kind = type(layers[0])
    if kind in _STACKERS:
        return _STACKERS[kind](layers)
    if isinstance(layers[0], CHANNELWISE):
        return copy.deepcopy(layers[0])
    raise TypeError(f"cannot stack {kind.__name__}: neither stackable nor channel-wise")


def stack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One network computing ``models[k]`` for every k, on image-layout input (B, K*C, H, W).

    All models must share one architecture. Containers are kept as they are (their
    forward must be layout-agnostic, as :data:`CHANNELWISE` ones are); every leaf is
    replaced by its stacked counterpart holding copies of the K models' tensors.
    The result returns (K, B, n_classes) logits.
    """
    template = models[0]
    for name, module in template.named_modules():
        if not isinstance(module, CHANNELWISE + tuple(_STACKERS)):
            raise TypeError(f"cannot stack {type(module).__name__} at {name!r}")
    stacked = copy.deepcopy(template)
    for name, module in template.named_modules():
        if name and next(module.children(), None) is None:
            stacked.set_submodule(name, _stack_leaf([m.get_submodule(name) for m in models]))
    return stacked


class StackedModels(nn.Module):
    """K built-in networks as one :func:`stack_models` network: the loop's ``Ensemble``."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.n_models = len(models)
        self.memory_format = preferred_memory_format(models[0])
        self.net = stack_models(models).to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def unstack(self) -> list[StateDict]:
        return unstack_state_dicts(self.net, self.n_models)


def unstack_state_dicts(stacked: nn.Module, n_models: int) -> list[StateDict]:
    """The K per-model state dicts of a :func:`stack_models` network, in the plain models' naming."""
    states: list[StateDict] = [{} for _ in range(n_models)]
    for name, module in stacked.named_modules():
        if hasattr(module, "unstack"):
            for state, part in zip(states, module.unstack()):
                state.update({f"{name}.{key}": t for key, t in part.items()})
    return states
