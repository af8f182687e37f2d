"""The training loop: how K models, held as one module, are fitted and evaluated.

This is the one home of the data on the device, batching, the optimizer and its schedule,
mixed precision, fitting and prediction. The loop sees K models only through the
:class:`Ensemble` interface; three modules implement it:

* :class:`longtail.nets.stacking.StackedModels`: the built-in networks stacked into one
  (grouped convolutions, batched matrix products);
* :class:`longtail.nets.functional.VmappedEnsemble`: any ``torch.nn.Module``, vmapped;
* :class:`SingleModel`: one plain network (K = 1), the reference the others must reproduce.

A :class:`Recipe` says how models are trained: its optimizer, learning-rate schedule, data
streams (order and augmentation), initialisation from the training data, per-epoch and per-step
hooks and the evaluation transform. The default is the trainer's SGD recipe; a new recipe
overrides some of them (:mod:`longtail.nets.airbench`). Which implementation trains which models,
and how many at a time, is :mod:`longtail.nets.ensemble`'s business (the planner).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from longtail.nets.config import TrainConfig
from longtail.nets.data import (
    CROP_AND_FLIP,
    Augmentation,
    DataStreams,
    EpochPlan,
    channel_stats,
    crop_and_flip,
    model_seeds,
    tta_logits,
)
from longtail.nets.models import build_model

StateDict = dict[str, torch.Tensor]

EVAL_BATCH_FACTOR = 2  # evaluation keeps no activations for backward, so it can use larger batches


class Ensemble(Protocol):
    """K models of one architecture as one module.

    Calling it maps image-layout input (B, K*C, H, W), model k owning channels
    ``k*C:(k+1)*C``, to (K, B, n_classes) logits; the models never interact. Its inputs are
    best laid out in ``memory_format``; ``unstack`` returns the K models' state dicts in the
    plain module's naming. The rest is ``nn.Module``'s, which every implementation is.
    """

    n_models: int
    memory_format: torch.memory_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def unstack(self) -> list[StateDict]: ...

    def train(self, mode: bool = True) -> nn.Module: ...

    def eval(self) -> nn.Module: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...

    def modules(self) -> Iterator[nn.Module]: ...

    def state_dict(self) -> StateDict: ...


#: Packs K freshly initialised plain models (on the training device) into one :class:`Ensemble`.
Pack = Callable[[Sequence[nn.Module]], Ensemble]


def preferred_memory_format(module: nn.Module) -> torch.memory_format:
    """NHWC (channels_last) for networks with convolutions (~1.3x faster training with oneDNN on
    CPU, and what cuDNN wants under bf16); the plain layout otherwise."""
    has_conv = any(isinstance(m, nn.Conv2d) for m in module.modules())
    return torch.channels_last if has_conv else torch.contiguous_format


class SingleModel(nn.Module):
    """One plain network as an :class:`Ensemble` of K = 1."""

    n_models = 1

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(models) != 1:
            raise ValueError(f"SingleModel holds exactly one model, got {len(models)}")
        self.memory_format = preferred_memory_format(models[0])
        self.model = models[0].to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).unsqueeze(0)

    def unstack(self) -> list[StateDict]:
        return [self.model.state_dict()]


@dataclass
class EnsembleResult:
    correct: dict[str, np.ndarray]  # eval-set name -> (K, n) bool: argmax == label
    true_prob: dict[str, np.ndarray]  # eval-set name -> (K, n) float32: softmax prob of the true label
    margin: dict[str, np.ndarray]  # eval-set name -> (K, n) float32: true-class logit minus the largest other logit
    # (K, epochs) mean training loss of each model per epoch, in the weights' dtype (float32; float64 in fp64)
    epoch_loss: np.ndarray
    state_dicts: list[StateDict] | None = None  # with config.keep_models: build_model state dicts, on CPU
    epoch_correct: dict[str, np.ndarray] | None = None  # with config.record_epochs: (K, epochs, n) bool, in eval mode
    epoch_true_prob: dict[str, np.ndarray] | None = None  # with config.record_epochs: (K, epochs, n) float32


@dataclass(frozen=True)
class Data:
    """Standardised training and evaluation data, resident on the training device."""

    images: torch.Tensor
    labels: torch.Tensor
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    n_classes: int

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])


@dataclass(frozen=True)
class Shard:
    """Models trained together: rows of the input masks, their model ids and (k, n) training indices."""

    rows: np.ndarray
    model_ids: np.ndarray
    subsets: np.ndarray


def prepare_data(
    images: np.ndarray,
    labels: np.ndarray,
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Data:
    """Move everything to the device once, standardised with the training images' channel stats.
    An eval set holding the training arrays themselves shares their tensors on the device."""
    train = torch.as_tensor(images, dtype=dtype, device=device)
    mean, std = channel_stats(train)
    train_images, train_labels = (train - mean) / std, _as_labels(labels, device)

    def on_device(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if x is images and y is labels:
            return train_images, train_labels
        return (torch.as_tensor(x, dtype=dtype, device=device) - mean) / std, _as_labels(y, device)

    return Data(
        images=train_images,
        labels=train_labels,
        eval_sets={name: on_device(x, y) for name, (x, y) in eval_sets.items()},
        n_classes=n_classes,
    )


def _as_labels(y: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)


#: The triangular schedule's (progress, factor) corners: airbench's ``triangle(start=0.2,
#: peak=0.23, end=0.07)`` (Jordan 2024), a warm-up from 0.2 to 1 over 23% of the steps, then a
#: linear decay to 0.07.
TRIANGLE = ((0.0, 0.2), (0.23, 1.0), (1.0, 0.07))


def schedule_factor(schedule: str, step: int, total_steps: int) -> float:
    """The learning rate of (0-based) optimizer step ``step`` out of ``total_steps``, relative to its peak."""
    progress = step / total_steps
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "triangular":
        (_, start), (peak, top), (_, end) = TRIANGLE
        corner = int(peak * total_steps)  # airbench's rounding of the peak to a step
        if step < corner:
            return start + (top - start) * step / corner
        return top + (end - top) * (step - corner) / (total_steps - corner)
    return 1.0


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of (0-based) optimizer step ``step`` out of ``total_steps``."""
    return config.lr * schedule_factor(config.schedule, step, total_steps)


def sgd(net: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """The trainer's optimizer over ``net``'s parameters."""
    return torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True)


def init_model(config: TrainConfig, model_id: int, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """``build_model`` under the model's own initialisation seed, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_seeds(config.seed, model_id)[0])
        return build_model(config.model, input_shape, n_classes, config.hidden_sizes).to(config.dtype)


class Recipe:
    """How models train: the trainer's SGD recipe. A recipe for another network overrides some
    of these methods; the loop calls each at its one place."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def init_models(self, models: Sequence[nn.Module], data: Data, shard: Shard) -> None:
        """Set what model k derives from its own training images ``data.images[shard.subsets[k]]``
        (standardised, on the device), before the models are packed."""

    def optimizer(self, net: Ensemble) -> torch.optim.Optimizer:
        return sgd(net, self.config)

    def set_lr(self, optimizer: torch.optim.Optimizer, step: int, total_steps: int) -> None:
        """Set every parameter group's learning rate for (0-based) step ``step``."""
        for group in optimizer.param_groups:
            group["lr"] = lr_at(self.config, step, total_steps)

    def augmentation(self) -> Augmentation | None:
        """How training images are augmented: with ``augment``, a random crop and flip."""
        return CROP_AND_FLIP if self.config.augment else None

    def streams(self, shard: Shard) -> DataStreams:
        """The shard's data order and augmentation, one random stream per model."""
        data_seeds = [model_seeds(self.config.seed, model_id)[1] for model_id in shard.model_ids]
        return DataStreams(shard.subsets, data_seeds, self.augmentation())

    def start_epoch(self, net: Ensemble, epoch: int) -> None:
        """Called before the epoch's first step."""

    def end_step(self, net: Ensemble, step: int, total_steps: int) -> None:
        """Called after optimizer step ``step`` (0-based)."""

    def logits(self, net: Ensemble, x: torch.Tensor) -> torch.Tensor:
        """The (K, B, n_classes) logits evaluation judges: the network's, under ``config.tta``."""
        return tta_logits(net, x, self.config.tta)


def autocast(config: TrainConfig, device: torch.device) -> AbstractContextManager:
    """The training forward pass's autocast: bf16 with ``precision: bf16`` (CPU, CUDA or MPS),
    none otherwise. The one place where mixed precision is switched on."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


@contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """cuBLAS matrix products in TF32 while training with ``precision: tf32`` (cuDNN's float32
    convolutions use TF32 by PyTorch's default anyway). The setting is the process's: it is
    restored afterwards, so evaluation and anything else run in full float32. Only PyTorch's
    current API is used, since reading the legacy ``allow_tf32`` after mixing the two raises."""
    if not enabled:
        yield
        return
    matmul = torch.backends.cuda.matmul
    previous, matmul.fp32_precision = matmul.fp32_precision, "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision = previous


def _batch(
    data: Data, plan: EpochPlan, columns: slice, layout: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-layout inputs (b, K*C, H, W) and (K, b) labels of one step of every model."""
    idx = plan.order[:, columns]
    x = data.images.index_select(0, idx.T.reshape(-1))  # row i*K + k: example i of model k
    if plan.augmentation is not None:
        offsets = plan.offsets[:, columns].transpose(0, 1).reshape(-1, 2)
        flips = plan.flips[:, columns].T.reshape(-1)
        x = crop_and_flip(x, offsets, flips, plan.augmentation.pad, plan.augmentation.pad_mode)
    x = x.reshape(idx.shape[1], -1, *x.shape[2:]).contiguous(memory_format=layout)
    return x, data.labels[idx]


def fit(
    net: Ensemble,
    streams: DataStreams,
    data: Data,
    recipe: Recipe,
    on_epoch_end: Callable[[], None] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    epochs: range | None = None,
) -> np.ndarray:
    """Train K models on minibatches of their subsets; return the (K, epochs) mean losses.

    The summed per-model mean losses give each model exactly the gradient of its own loss.
    ``on_epoch_end`` may evaluate the models; it must leave ``net`` in training mode.
    ``optimizer`` and ``epochs`` (default: the recipe's fresh optimizer and all of
    ``config.epochs``) let a caller run part of the schedule and continue it later, momenta
    included (benchmarks/noise.py branches runs this way); the losses of other epochs stay 0.
    """
    config = recipe.config
    k, n = streams.subsets.shape
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    optimizer = optimizer or recipe.optimizer(net)
    loss_sums = torch.zeros(k, config.epochs, dtype=data.images.dtype, device=data.device)
    net.train()
    for epoch in range(config.epochs) if epochs is None else epochs:  # an empty range runs none
        plan = streams.next_epoch(data.device)
        recipe.start_epoch(net, epoch)
        with tf32_matmuls(config.precision == "tf32"):
            for step, start in enumerate(range(0, n, config.batch_size)):
                x, y = _batch(data, plan, slice(start, start + config.batch_size), net.memory_format)
                with autocast(config, data.device):
                    logits = net(x)
                losses = F.cross_entropy(
                    logits.to(data.images.dtype).flatten(0, 1), y.flatten(), reduction="none",
                    label_smoothing=config.label_smoothing,
                ).view(k, -1)
                optimizer.zero_grad(set_to_none=True)
                (losses.sum() / losses.shape[1]).backward()
                recipe.set_lr(optimizer, epoch * steps_per_epoch + step, total_steps)
                optimizer.step()
                recipe.end_step(net, epoch * steps_per_epoch + step, total_steps)
                loss_sums[:, epoch] += losses.detach().sum(1)
        if on_epoch_end is not None:
            on_epoch_end()
    return (loss_sums / n).cpu().numpy()


@torch.no_grad()
def predict(
    net: Ensemble, images: torch.Tensor, labels: torch.Tensor, batch_size: int, recipe: Recipe
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K, n) correctness, float32 true-label probability and float32 logit margin (true-class
    logit minus the largest other logit: positive exactly where the model is right, bar exact
    ties) of K models on shared images, as the recipe's evaluation judges them, computed in the
    images' dtype without autocast (full precision whatever the training's)."""
    k = net.n_models
    correct, true_prob, margin = [torch.zeros(k, 0, dtype=torch.bool)], [torch.zeros(k, 0)], [torch.zeros(k, 0)]
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        x = x.unsqueeze(1).expand(-1, k, -1, -1, -1).reshape(len(x), -1, *x.shape[2:])
        logits = recipe.logits(net, x.contiguous(memory_format=net.memory_format))
        correct.append((logits.argmax(-1) == y).cpu())
        label = y.expand(k, -1).unsqueeze(-1)
        true_prob.append(logits.softmax(-1).gather(-1, label).squeeze(-1).float().cpu())
        true_logit = logits.gather(-1, label).squeeze(-1)
        best_other = logits.scatter(-1, label, -torch.inf).amax(-1)
        margin.append((true_logit - best_other).float().cpu())
    return torch.cat(correct, 1), torch.cat(true_prob, 1), torch.cat(margin, 1)


def train_and_evaluate(net: Ensemble, shard: Shard, data: Data, recipe: Recipe) -> EnsembleResult:
    """Train the shard's K models (held in ``net``) and evaluate them on every eval set (also
    after every epoch with ``config.record_epochs``; evaluation changes no weight or statistic)."""
    config = recipe.config
    batch_size = EVAL_BATCH_FACTOR * config.batch_size

    def evaluate() -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        net.eval()
        return {name: predict(net, x, y, batch_size, recipe) for name, (x, y) in data.eval_sets.items()}

    epochs: list[dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = []

    def record_epoch() -> None:
        epochs.append(evaluate())
        net.train()

    epoch_loss = fit(net, recipe.streams(shard), data, recipe, record_epoch if config.record_epochs else None)
    predictions = evaluate()
    result = EnsembleResult(
        correct={name: c.numpy() for name, (c, _, _) in predictions.items()},
        true_prob={name: p.numpy() for name, (_, p, _) in predictions.items()},
        margin={name: m.numpy() for name, (_, _, m) in predictions.items()},
        epoch_loss=epoch_loss,
    )
    if config.record_epochs:
        result.epoch_correct = {name: torch.stack([e[name][0] for e in epochs], 1).numpy() for name in predictions}
        result.epoch_true_prob = {name: torch.stack([e[name][1] for e in epochs], 1).numpy() for name in predictions}
    return result


def train_shard(pack: Pack, shard: Shard, data: Data, recipe: Recipe) -> EnsembleResult:
    """Initialise the shard's models, pack them into one :class:`Ensemble` with ``pack``, train
    and evaluate them (compiled with ``config.compile``); with ``config.keep_models`` their
    state dicts come back on the CPU."""
    config = recipe.config
    models = [init_model(config, i, data.input_shape, data.n_classes).to(data.device) for i in shard.model_ids]
    recipe.init_models(models, data, shard)
    net = pack(models)
    result = train_and_evaluate(torch.compile(net) if config.compile else net, shard, data, recipe)
    if config.keep_models:
        result.state_dicts = _cpu_states(net.unstack())
    return result


def _cpu_states(states: list[StateDict]) -> list[StateDict]:
    """Copies on the CPU, sharing no memory with the network."""
    return [{name: t.detach().to("cpu", copy=True) for name, t in state.items()} for state in states]
