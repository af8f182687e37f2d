"""Train many small models, each on its own subset of the data, as one batched computation.

:func:`train_ensemble` stacks K models of one architecture into a single network
(:mod:`longtail.nets.stacking`) and trains them with one optimizer; :func:`train_one_by_one`
is the plain per-model loop it replaces. Both share every other step (seeding, batching,
schedule, evaluation), so they compute the same models up to floating-point rounding.
How many models make one shard is :mod:`longtail.nets.sizing`'s business.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from longtail.nets.config import TrainConfig, available_cpus, precision_problem, resolve_device
from longtail.nets.data import DataStreams, EpochPlan, channel_stats, crop_and_flip, model_seeds
from longtail.nets.models import build_model, is_builtin
from longtail.nets.sizing import models_in_memory
from longtail.nets.stacking import StateDict, stack_models, unstack_state_dicts

logger = logging.getLogger(__name__)

EVAL_BATCH_FACTOR = 2  # evaluation keeps no activations for backward, so it can use larger batches

#: Maps image-layout input (B, K*C, H, W) to (K, B, n_classes) logits.
Forward = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]


@dataclass
class EnsembleResult:
    correct: dict[str, np.ndarray]  # eval-set name -> (K, n) bool: argmax == label
    true_prob: dict[str, np.ndarray]  # eval-set name -> (K, n) float32: softmax prob of the true label
    # (K, epochs) mean training loss of each model per epoch, in the weights' dtype (float32; float64 in fp64)
    epoch_loss: np.ndarray
    state_dicts: list[StateDict] | None = None  # with config.keep_models: build_model state dicts, on CPU
    epoch_correct: dict[str, np.ndarray] | None = None  # with config.record_epochs: (K, epochs, n) bool, in eval mode
    epoch_true_prob: dict[str, np.ndarray] | None = None  # with config.record_epochs: (K, epochs, n) float32


@dataclass(frozen=True)
class _Data:
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
class _Shard:
    """Models trained together: rows of the input masks, their model ids and (k, n) training indices."""

    rows: np.ndarray
    model_ids: np.ndarray
    subsets: np.ndarray


ShardTrainer = Callable[[_Shard, _Data, TrainConfig], EnsembleResult]


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of (0-based) optimizer step ``step`` out of ``total_steps``."""
    progress = step / total_steps
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return config.lr * (1.0 - progress)
    return config.lr


def _autocast(config: TrainConfig, device: torch.device) -> AbstractContextManager:
    """The training forward pass's autocast: bf16 with ``precision: bf16`` (CPU, CUDA or MPS),
    none otherwise. The one place where mixed precision is switched on."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


@contextmanager
def _tf32_matmuls(enabled: bool) -> Iterator[None]:
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


def _memory_format(config: TrainConfig) -> torch.memory_format:
    """NHWC (channels_last) for conv nets: ~1.3x faster training with oneDNN on CPU, and what cuDNN wants under bf16."""
    return torch.contiguous_format if config.model == "mlp" else torch.channels_last


def _init_model(config: TrainConfig, model_id: int, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """``build_model`` under the model's own initialisation seed, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_seeds(config.seed, model_id)[0])
        return build_model(config.model, input_shape, n_classes, config.hidden_sizes).to(config.dtype)


def _streams(shard: _Shard, config: TrainConfig) -> DataStreams:
    data_seeds = [model_seeds(config.seed, model_id)[1] for model_id in shard.model_ids]
    return DataStreams(shard.subsets, data_seeds, config.augment)


def _batch(
    data: _Data, plan: EpochPlan, columns: slice, layout: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-layout inputs (b, K*C, H, W) and (K, b) labels of one step of every model."""
    idx = plan.order[:, columns]
    x = data.images.index_select(0, idx.T.reshape(-1))  # row i*K + k: example i of model k
    if plan.offsets is not None:
        offsets = plan.offsets[:, columns].transpose(0, 1).reshape(-1, 2)
        x = crop_and_flip(x, offsets, plan.flips[:, columns].T.reshape(-1))
    x = x.reshape(idx.shape[1], -1, *x.shape[2:]).contiguous(memory_format=layout)
    return x, data.labels[idx]


def sgd(net: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """The trainer's optimizer over ``net``'s parameters."""
    return torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True)


def _fit(
    net: nn.Module,
    forward: Forward,
    streams: DataStreams,
    data: _Data,
    config: TrainConfig,
    on_epoch_end: Callable[[], None] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    epochs: range | None = None,
) -> np.ndarray:
    """Train K models with SGD on minibatches of their subsets; return the (K, epochs) mean losses.

    The summed per-model mean losses give each model exactly the gradient of its own loss.
    ``on_epoch_end`` may evaluate the models; it must leave ``net`` in training mode.
    ``optimizer`` and ``epochs`` (default: a fresh ``sgd`` and all of ``config.epochs``) let a
    caller run part of the schedule and continue it later, momenta included
    (benchmarks/noise.py branches runs this way); the losses of other epochs stay 0.
    """
    k, n = streams.subsets.shape
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    optimizer = optimizer or sgd(net, config)
    layout = _memory_format(config)
    loss_sums = torch.zeros(k, config.epochs, dtype=data.images.dtype, device=data.device)
    net.train()
    for epoch in epochs or range(config.epochs):
        plan = streams.next_epoch(data.device)
        with _tf32_matmuls(config.precision == "tf32"):
            for step, start in enumerate(range(0, n, config.batch_size)):
                x, y = _batch(data, plan, slice(start, start + config.batch_size), layout)
                with _autocast(config, data.device):
                    logits = forward(x)
                losses = F.cross_entropy(
                    logits.to(data.images.dtype).flatten(0, 1), y.flatten(), reduction="none",
                    label_smoothing=config.label_smoothing,
                ).view(k, -1)
                optimizer.zero_grad(set_to_none=True)
                (losses.sum() / losses.shape[1]).backward()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, epoch * steps_per_epoch + step, total_steps)
                optimizer.step()
                loss_sums[:, epoch] += losses.detach().sum(1)
        if on_epoch_end is not None:
            on_epoch_end()
    return (loss_sums / n).cpu().numpy()


@torch.no_grad()
def _predict(
    forward: Forward, k: int, images: torch.Tensor, labels: torch.Tensor, batch_size: int, layout: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, n) correctness and float32 true-label probability of K models on shared images,
    computed in the images' dtype without autocast (full precision whatever the training's)."""
    correct, true_prob = [torch.zeros(k, 0, dtype=torch.bool)], [torch.zeros(k, 0)]
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        x = x.unsqueeze(1).expand(-1, k, -1, -1, -1).reshape(len(x), -1, *x.shape[2:])
        logits = forward(x.contiguous(memory_format=layout))
        correct.append((logits.argmax(-1) == y).cpu())
        probs = logits.softmax(-1)
        true_prob.append(probs.gather(-1, y.expand(k, -1).unsqueeze(-1)).squeeze(-1).float().cpu())
    return torch.cat(correct, 1), torch.cat(true_prob, 1)


def _train_and_evaluate(
    net: nn.Module, forward: Forward, shard: _Shard, data: _Data, config: TrainConfig
) -> EnsembleResult:
    """Train the shard's K models (held in ``net``) and evaluate them on every eval set (also
    after every epoch with ``config.record_epochs``; evaluation changes no weight or statistic)."""
    k, batch_size = len(shard.rows), EVAL_BATCH_FACTOR * config.batch_size
    layout = _memory_format(config)

    def evaluate() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        net.eval()
        return {name: _predict(forward, k, x, y, batch_size, layout) for name, (x, y) in data.eval_sets.items()}

    epochs: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []

    def record_epoch() -> None:
        epochs.append(evaluate())
        net.train()

    epoch_loss = _fit(net, forward, _streams(shard, config), data, config, record_epoch if config.record_epochs else None)
    predictions = evaluate()
    result = EnsembleResult(
        correct={name: c.numpy() for name, (c, _) in predictions.items()},
        true_prob={name: p.numpy() for name, (_, p) in predictions.items()},
        epoch_loss=epoch_loss,
    )
    if config.record_epochs:
        result.epoch_correct = {name: torch.stack([e[name][0] for e in epochs], 1).numpy() for name in predictions}
        result.epoch_true_prob = {name: torch.stack([e[name][1] for e in epochs], 1).numpy() for name in predictions}
    return result


def _prepare_net(net: nn.Module, config: TrainConfig, device: torch.device) -> tuple[nn.Module, Forward]:
    net = net.to(device, memory_format=_memory_format(config))
    return net, torch.compile(net) if config.compile else net


def _cpu_states(states: list[StateDict]) -> list[StateDict]:
    """Copies on the CPU, sharing no memory with the network."""
    return [{name: t.detach().to("cpu", copy=True) for name, t in state.items()} for state in states]


def _train_stacked(shard: _Shard, data: _Data, config: TrainConfig) -> EnsembleResult:
    """The shard's models stacked into one network and trained together."""
    models = [_init_model(config, i, data.input_shape, data.n_classes) for i in shard.model_ids]
    net, forward = _prepare_net(stack_models(models), config, data.device)
    result = _train_and_evaluate(net, forward, shard, data, config)
    if config.keep_models:
        result.state_dicts = _cpu_states(unstack_state_dicts(net, len(models)))
    return result


def _train_plain(shard: _Shard, data: _Data, config: TrainConfig) -> EnsembleResult:
    """The shard's models trained one after another as plain ``build_model`` networks."""
    results = []
    for row in range(len(shard.rows)):
        single = _Shard(shard.rows[row : row + 1], shard.model_ids[row : row + 1], shard.subsets[row : row + 1])
        net, plain_forward = _prepare_net(
            _init_model(config, single.model_ids[0], data.input_shape, data.n_classes), config, data.device
        )
        result = _train_and_evaluate(net, lambda x: plain_forward(x).unsqueeze(0), single, data, config)
        if config.keep_models:
            result.state_dicts = _cpu_states([net.state_dict()])
        results.append(result)
    return _concat(results)


def _joined(results: list[EnsembleResult], field: str) -> dict[str, np.ndarray] | None:
    """One per-eval-set field of ``results``, concatenated over models (None if not recorded)."""
    parts = [getattr(r, field) for r in results]
    if parts[0] is None:
        return None
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _concat(results: list[EnsembleResult]) -> EnsembleResult:
    first = results[0]
    return EnsembleResult(
        correct=_joined(results, "correct"),
        true_prob=_joined(results, "true_prob"),
        epoch_loss=np.concatenate([r.epoch_loss for r in results]),
        state_dicts=None if first.state_dicts is None else [s for r in results for s in r.state_dicts],
        epoch_correct=_joined(results, "epoch_correct"),
        epoch_true_prob=_joined(results, "epoch_true_prob"),
    )


def _prepare_data(
    images: np.ndarray,
    labels: np.ndarray,
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    device: torch.device,
    dtype: torch.dtype,
) -> _Data:
    """Move everything to the device once, standardised with the training images' channel stats.
    An eval set holding the training arrays themselves shares their tensors on the device."""
    train = torch.as_tensor(images, dtype=dtype, device=device)
    mean, std = channel_stats(train)
    train_images, train_labels = (train - mean) / std, _as_labels(labels, device)

    def on_device(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if x is images and y is labels:
            return train_images, train_labels
        return (torch.as_tensor(x, dtype=dtype, device=device) - mean) / std, _as_labels(y, device)

    return _Data(
        images=train_images,
        labels=train_labels,
        eval_sets={name: on_device(x, y) for name, (x, y) in eval_sets.items()},
        n_classes=n_classes,
    )


def _as_labels(y: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)


def _plan_shards(masks: np.ndarray, model_ids: np.ndarray, per_shard: int) -> Iterator[_Shard]:
    """Group models by subset size (one batch shape per shard), then cut groups into shards."""
    sizes = masks.sum(1)
    for size in np.unique(sizes):
        rows = np.flatnonzero(sizes == size)
        for start in range(0, len(rows), per_shard):
            chunk = rows[start : start + per_shard]
            yield _Shard(chunk, model_ids[chunk], np.stack([np.flatnonzero(masks[r]) for r in chunk]))


def _validate(images: np.ndarray, labels: np.ndarray, masks: np.ndarray, model_ids: np.ndarray) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},), got shape {labels.shape}")
    if masks.ndim != 2 or masks.shape[1] != len(images):
        raise ValueError(f"masks must be (K, {len(images)}), got shape {masks.shape}")
    if model_ids.shape != (len(masks),):
        raise ValueError(f"model_ids must be ({len(masks)},), got shape {model_ids.shape}")
    if not masks.any(1).all():
        raise ValueError("every model needs a non-empty training subset")


def _reorder(result: EnsembleResult, rows: np.ndarray) -> EnsembleResult:
    """Put shard-ordered results back into the input row order."""
    inverse = np.argsort(rows)

    def reordered(arrays: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if arrays is None else {name: a[inverse] for name, a in arrays.items()}

    return EnsembleResult(
        correct=reordered(result.correct),
        true_prob=reordered(result.true_prob),
        epoch_loss=result.epoch_loss[inverse],
        state_dicts=None if result.state_dicts is None else [result.state_dicts[i] for i in inverse],
        epoch_correct=reordered(result.epoch_correct),
        epoch_true_prob=reordered(result.epoch_true_prob),
    )


def train_ensemble(
    images: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    model_ids: np.ndarray,
    config: TrainConfig,
    n_classes: int,
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    progress: Progress | None = None,
    *,
    shard_trainer: ShardTrainer | None = None,
) -> EnsembleResult:
    """Train model k on ``images[masks[k]]`` for every row k, many models at a time.

    images: float32 (N, C, H, W) in [0, 1]; labels: int (N,); masks: bool (K, N), rows may
    differ in size; model_ids: (K,) global model indices, which together with ``config.seed``
    alone determine each model's initialisation and data order. Every model is evaluated on
    every example of every eval set. Results are in the input row order. ``shard_trainer``
    trains one shard of models (default: ``_shard_trainer(config)``).
    """
    train_shard = shard_trainer or _shard_trainer(config)
    masks, model_ids = np.asarray(masks, dtype=bool), np.asarray(model_ids, dtype=np.int64)
    _validate(images, labels, masks, model_ids)
    device = resolve_device(config.device)
    problem = precision_problem(config.precision, config.device)
    if problem:
        raise ValueError(f"precision={config.precision!r}: {problem}")
    if device.type == "cpu":
        torch.set_num_threads(config.threads or available_cpus())
    data = _prepare_data(images, labels, eval_sets, n_classes, device, config.dtype)
    total, done, started = len(masks), 0, time.perf_counter()
    results: list[EnsembleResult] = []
    shards = list(_plan_shards(masks, model_ids, models_in_memory(config, data.device, data.input_shape, n_classes)))
    for shard in shards:
        results.append(train_shard(shard, data, config))
        done += len(shard.rows)
        rate = done / (time.perf_counter() - started)
        logger.info("trained %d/%d models (%.2f models/s, %.0f s left)", done, total, rate, (total - done) / rate)
        if progress is not None:
            progress(done, total)
    return _reorder(_concat(results), np.concatenate([s.rows for s in shards]))


def _shard_trainer(config: TrainConfig) -> ShardTrainer:
    """Built-in networks train stacked (faster than vmap, docs/benchmarks.md); any other module vmapped."""
    if is_builtin(config.model):
        return _train_stacked
    from longtail.nets.functional import train_vmapped  # noqa: PLC0415 - functional builds on this module

    return train_vmapped


def train_one_by_one(
    images: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    model_ids: np.ndarray,
    config: TrainConfig,
    n_classes: int,
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    progress: Progress | None = None,
) -> EnsembleResult:
    """Reference for :func:`train_ensemble`: the same models, trained one at a time as plain networks."""
    return train_ensemble(images, labels, masks, model_ids, config, n_classes, eval_sets, progress, shard_trainer=_train_plain)
