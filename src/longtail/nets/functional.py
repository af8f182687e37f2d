"""Any ``torch.nn.Module`` trained as a batched ensemble with PyTorch's functional API.

The K models of a shard are built one by one, each under its own (seed, model id) seed, then
their parameters and buffers are stacked (``torch.func.stack_module_state``) and one
``torch.func.vmap`` over ``torch.func.functional_call`` runs all of them on their own
minibatches. Everything else (data order, SGD, schedule, evaluation) is the loop the built-in
stacked networks train with (:mod:`longtail.nets.loop`), so the models equal those of
one-by-one training up to floating-point rounding.

Buffers are vmapped like the parameters, so BatchNorm's running statistics are updated per
model in place, as PyTorch's guidance on vmap and batch norm describes. A module that vmap
cannot run (data-dependent Python control flow, ``.item()``, BatchNorm with
``momentum=None``, ...) is told by :func:`vmappable`; the planner then trains it one model at
a time.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from longtail.nets.loop import StateDict, preferred_memory_format
from longtail.nets.models import build_model

logger = logging.getLogger(__name__)

PROBE_EXAMPLES = 4  # BatchNorm in training mode needs more than one value per channel


class VmappedEnsemble(nn.Module):
    """K modules of one architecture as stacked parameters and buffers, run side by side: the
    loop's ``Ensemble``.

    Takes the image layout of :mod:`longtail.nets.stacking`, (B, K*C, H, W), model k owning
    channels ``k*C:(k+1)*C``, and returns (K, B, n_classes) logits. The template module only
    supplies the forward code: it is not a submodule, so its own tensors are never trained.
    Random layers (dropout) draw different numbers for each model from torch's global generator.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        params, buffers = stack_module_state(list(models))
        self.n_models = len(models)
        self.memory_format = preferred_memory_format(models[0])
        self._param_names, self._buffer_names = list(params), list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[name].detach()) for name in self._param_names])
        for position, name in enumerate(self._buffer_names):
            self.register_buffer(f"buffer_{position}", buffers[name])
        object.__setattr__(self, "template", copy.deepcopy(models[0]))
        self._run = vmap(self._one_model, in_dims=(0, 0, 1), randomness="different")

    def _buffers_stacked(self) -> list[torch.Tensor]:
        return [getattr(self, f"buffer_{position}") for position in range(len(self._buffer_names))]

    def _one_model(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def train(self, mode: bool = True) -> VmappedEnsemble:
        self.template.train(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self._param_names, self.stacked, strict=True))
        buffers = dict(zip(self._buffer_names, self._buffers_stacked(), strict=True))
        return self._run(params, buffers, x.unflatten(1, (self.n_models, -1)))

    def unstack(self) -> list[StateDict]:
        """The K models' state dicts, in the plain module's naming."""
        named = [*zip(self._param_names, self.stacked), *zip(self._buffer_names, self._buffers_stacked())]
        return [{name: tensor[k].detach() for name, tensor in named} for k in range(self.n_models)]


def vmap_problem(template: nn.Module, input_shape: tuple[int, ...], n_classes: int, device: torch.device) -> str | None:
    """Why two copies of ``template`` cannot train vmapped (None when they can): a training
    step and an evaluation on a tiny batch, on copies, so ``template`` is left untouched."""
    net = VmappedEnsemble([copy.deepcopy(template).to(device) for _ in range(2)])
    try:
        with torch.random.fork_rng(devices=[]):
            x = torch.randn(PROBE_EXAMPLES, 2 * input_shape[0], *input_shape[1:], device=device)
            logits = net.train()(x)
            if logits.shape != (2, PROBE_EXAMPLES, n_classes):
                return f"it returns logits of shape {tuple(logits.shape[1:])} per model, not (batch, {n_classes})"
            F.cross_entropy(logits.flatten(0, 1), torch.zeros(2 * PROBE_EXAMPLES, dtype=torch.long, device=device)).backward()
            with torch.no_grad():
                net.eval()(x)
    except Exception as error:  # noqa: BLE001 - any failure means: train it the plain way
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


@functools.cache
def vmappable(model: str, input_shape: tuple[int, ...], n_classes: int, device: torch.device) -> bool:
    """Whether ``model`` (a factory's import path) trains vmapped: probed once per process and
    model on a copy built under a forked RNG; logs once why a model falls back."""
    with torch.random.fork_rng(devices=[]):
        template = build_model(model, input_shape, n_classes)
    problem = vmap_problem(template, input_shape, n_classes, device)
    if problem is not None:
        logger.warning("model %s cannot be vmapped (%s); training its models one at a time", model, problem)
    return problem is None
