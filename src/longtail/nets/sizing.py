"""How many models train together as one shard when ``models_in_memory`` is not set: the
memory one model needs (weights, gradients, momenta and activations, measured by one forward
pass) against the device's budget."""

from __future__ import annotations

import math

import torch

from longtail.nets.config import TrainConfig
from longtail.nets.models import build_model, is_builtin

CPU_SHARD_BYTES = 128 << 20  # auto shard size on CPU: ~8 MNIST MLPs; larger shards spill caches and run slower
GPU_MEMORY_FRACTION = 0.5  # auto shard size on CUDA: this fraction of the free memory


def footprint(config: TrainConfig, input_shape: tuple[int, int, int], n_classes: int) -> tuple[int, int]:
    """(parameters, values output by all leaf modules per example) of one model, inferred on the meta device
    (a user's module on the CPU: its forward may need real values, e.g. for control flow)."""
    sizes: list[int] = []
    with torch.device("meta" if is_builtin(config.model) else "cpu"):
        model = build_model(config.model, input_shape, n_classes, config.hidden_sizes).eval()
        for module in model.modules():
            if next(module.children(), None) is None:
                module.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
        model(torch.zeros(1, *input_shape))
    return sum(p.numel() for p in model.parameters()), sum(sizes) + math.prod(input_shape)


def bytes_per_model(config: TrainConfig, input_shape: tuple[int, int, int], n_classes: int) -> int:
    """The planner's estimate of one model's training memory in bytes, in the weights' dtype
    (float32, or float64 in fp64): weights, gradients and momenta, and the activations of a batch
    (tests/nets/test_cuda.py checks on a GPU that training never needs more than this over
    ``GPU_MEMORY_FRACTION``)."""
    params, activations = footprint(config, input_shape, n_classes)
    return config.dtype.itemsize * (4 * params + 3 * config.batch_size * activations)


def models_in_memory(config: TrainConfig, device: torch.device, input_shape: tuple[int, int, int], n_classes: int) -> int:
    """Configured, or as many models as fit the memory budget of ``device``."""
    if config.models_in_memory is not None:
        return config.models_in_memory
    if device.type == "cuda":
        budget = GPU_MEMORY_FRACTION * torch.cuda.mem_get_info(device)[0]
    else:
        budget = CPU_SHARD_BYTES
    return max(1, int(budget // bytes_per_model(config, input_shape, n_classes)))
