"""A few models trained on the whole training split, watched as they learn: what the
training-dynamics proxies (:mod:`longtail.approx.dynamics`) and the gradient-based attribution
methods (:mod:`longtail.approx.attribution`) are computed from.

The models are the project's own (:mod:`longtail.nets`): the same initialisation, data order,
SGD, schedule and precision as a study's subset models, only trained on every example. At the
end of every epoch each model classifies every training example (in eval mode), and at the
requested epochs its weights are copied to the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from longtail.nets.config import TrainConfig, available_cpus, precision_problem, resolve_device
from longtail.nets.data import channel_stats
from longtail.nets.ensemble import implementation, recipe_for
from longtail.nets.loop import (
    EVAL_BATCH_FACTOR,
    Shard,
    SingleModel,
    StateDict,
    _cpu_states,
    fit,
    init_model,
    lr_at,
    predict,
    prepare_data,
)
from longtail.nets.models import build_model

MAX_RUNS = 8  # the budget: a proxy from at most 8 full-data runs


@dataclass(frozen=True)
class FullRuns:
    """``n_runs`` full-data models of one configuration, watched as they learn.

    ``checkpoints[r][c]`` holds run r's weights (a CPU state dict of ``build_model``) at the
    end of epoch ``checkpoint_epochs[c]`` (0 = the initial weights). ``epoch_lr[e]`` is the
    mean learning rate of epoch e + 1's steps, the same for every run. ``mean`` and ``std``
    are the per-channel statistics the trainer standardised the images with.
    """

    config: TrainConfig
    n_classes: int
    input_shape: tuple[int, int, int]
    mean: np.ndarray  # (1, C, 1, 1)
    std: np.ndarray  # (1, C, 1, 1)
    epoch_correct: np.ndarray  # (runs, epochs, n_train) bool
    epoch_true_prob: np.ndarray  # (runs, epochs, n_train) float32
    checkpoint_epochs: tuple[int, ...]
    checkpoints: list[list[StateDict]]
    epoch_lr: np.ndarray  # (epochs,)
    train_seconds: float  # all of train_full_runs
    record_seconds: float  # the part spent classifying the training examples after every epoch

    @property
    def n_runs(self) -> int:
        return len(self.checkpoints)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    def checkpoint_lr(self, position: int) -> float:
        """The learning rate a checkpoint's TracIn term is weighted by: the mean learning rate
        of the epoch that ended there (0 for the initial weights, which no step produced)."""
        epoch = self.checkpoint_epochs[position]
        return float(self.epoch_lr[epoch - 1]) if epoch > 0 else 0.0

    def checkpoint_at(self, epoch: int) -> int:
        """The position of ``epoch`` in ``checkpoint_epochs``; ValueError if not stored."""
        if epoch not in self.checkpoint_epochs:
            raise ValueError(f"no weights stored at epoch {epoch}; stored: {list(self.checkpoint_epochs)}")
        return self.checkpoint_epochs.index(epoch)

    def model(self, run: int, position: int = -1) -> nn.Module:
        """Run ``run``'s network at checkpoint ``position`` (default the last), in eval mode on the CPU."""
        net = build_model(self.config.model, self.input_shape, self.n_classes, self.config.hidden_sizes).to(self.config.dtype)
        net.load_state_dict(self.checkpoints[run][position])
        return net.eval()

    def standardise(self, images: np.ndarray) -> torch.Tensor:
        """Images in [0, 1] as the networks saw them: standardised with the training statistics."""
        x = torch.as_tensor(np.asarray(images), dtype=self.config.dtype)
        return (x - torch.as_tensor(self.mean, dtype=x.dtype)) / torch.as_tensor(self.std, dtype=x.dtype)


@dataclass(frozen=True)
class Budget:
    """What a method's cost is counted against (``longtail.approx.result``): one subset model
    of the study trains ``study_epochs`` (None: as many as the runs) on ``subset_ratio`` of the
    examples in ``subset_model_seconds``, measured in the same process."""

    subset_model_seconds: float
    subset_ratio: float
    study_epochs: int | None = None

    def __post_init__(self) -> None:
        if not self.subset_model_seconds > 0:
            raise ValueError(f"subset_model_seconds must be > 0; got {self.subset_model_seconds}")
        if not 0 < self.subset_ratio <= 1:
            raise ValueError(f"subset_ratio must be in (0, 1]; got {self.subset_ratio}")
        if self.study_epochs is not None and self.study_epochs < 1:
            raise ValueError(f"study_epochs must be >= 1; got {self.study_epochs}")

    def cost(
        self, runs: FullRuns, last_epoch: int, extra_seconds: float, *, records: bool = False, n_runs: int | None = None
    ) -> tuple[float, float]:
        """(cost in subset models, seconds) of a method that needs ``n_runs`` of the ``runs``
        (None: all) trained for ``last_epoch`` epochs (each run counts 1 / ratio × last_epoch /
        study epochs; 0 runs or epochs: no training), their per-epoch records if ``records``,
        and ``extra_seconds`` of its own."""
        used = runs.n_runs if n_runs is None else n_runs
        share = last_epoch / runs.epochs * used / runs.n_runs
        training = used / self.subset_ratio * last_epoch / (self.study_epochs or runs.epochs)
        recorded = runs.record_seconds * share if records else 0.0
        seconds = (runs.train_seconds - runs.record_seconds) * share + recorded + extra_seconds
        return training + (recorded + extra_seconds) / self.subset_model_seconds, seconds


def _checked_epochs(checkpoint_epochs: Sequence[int] | None, epochs: int) -> tuple[int, ...]:
    if checkpoint_epochs is None:
        return tuple(range(1, epochs + 1))
    chosen = tuple(sorted({int(e) for e in checkpoint_epochs}))
    if not chosen or chosen[0] < 0 or chosen[-1] > epochs:
        raise ValueError(f"checkpoint_epochs must be non-empty and within 0..{epochs} (0 = initial weights); got {list(checkpoint_epochs)}")
    return chosen


def _check_inputs(images: np.ndarray, labels: np.ndarray, n_runs: int) -> None:
    if not 1 <= n_runs <= MAX_RUNS:
        raise ValueError(f"n_runs must be within 1..{MAX_RUNS}; got {n_runs}")
    if images.ndim != 4 or labels.shape != (len(images),):
        raise ValueError(f"images must be (N, C, H, W) and labels (N,); got shapes {images.shape} and {labels.shape}")


def _epoch_lr(config: TrainConfig, n_train: int) -> np.ndarray:
    """The mean learning rate of each epoch's steps (``lr_at`` is per step)."""
    steps = math.ceil(n_train / config.batch_size)
    total = config.epochs * steps
    return np.array([np.mean([lr_at(config, e * steps + s, total) for s in range(steps)]) for e in range(config.epochs)])


def train_full_runs(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    n_runs: int,
    *,
    seed: int = 0,
    checkpoint_epochs: Sequence[int] | None = None,
    n_classes: int | None = None,
) -> FullRuns:
    """Train ``n_runs`` (≤ 8) models on all of ``images`` (float (N, C, H, W) in [0, 1]) under
    ``config`` with its seed replaced by ``seed``, recording after every epoch how each training
    example is classified, and keeping the weights at ``checkpoint_epochs`` (default: the end of
    every epoch; 0 = the initial weights). ``n_classes`` defaults to the largest label + 1."""
    labels = np.asarray(labels)
    _check_inputs(images, labels, n_runs)
    problem = precision_problem(config.precision, config.device)
    if problem:
        raise ValueError(f"precision={config.precision!r}: {problem}")
    config = replace(config, seed=seed, record_epochs=False, keep_models=False)
    epochs = _checked_epochs(checkpoint_epochs, config.epochs)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    device = resolve_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(config.threads or available_cpus())
    started = time.perf_counter()
    data = prepare_data(images, labels, {}, n_classes, device, config.dtype)
    pack = implementation(config, data.input_shape, n_classes, data.device)
    if pack is SingleModel and n_runs > 1:
        raise ValueError(f"model {config.model!r} cannot be vmapped, so its {n_runs} runs cannot train together; use n_runs=1")
    recipe = recipe_for(config)
    shard = Shard(np.arange(n_runs), np.arange(n_runs), np.tile(np.arange(len(labels)), (n_runs, 1)))
    models = [init_model(config, run, data.input_shape, n_classes).to(device) for run in range(n_runs)]
    recipe.init_models(models, data, shard)
    net = pack(models)
    trained = torch.compile(net) if config.compile else net
    checkpoints: list[list[StateDict]] = [[] for _ in range(n_runs)]
    correct, true_prob, recording = [], [], [0.0]

    def keep_weights() -> None:
        for run, state in enumerate(_cpu_states(net.unstack())):
            checkpoints[run].append(state)

    def on_epoch_end() -> None:
        start = time.perf_counter()
        trained.eval()
        c, p, _ = predict(trained, data.images, data.labels, EVAL_BATCH_FACTOR * config.batch_size, recipe)
        correct.append(c.numpy())
        true_prob.append(p.numpy())
        if len(correct) in epochs:
            keep_weights()
        trained.train()
        recording[0] += time.perf_counter() - start

    if 0 in epochs:
        keep_weights()
    fit(trained, recipe.streams(shard), data, recipe, on_epoch_end)
    mean, std = channel_stats(torch.as_tensor(images, dtype=config.dtype))
    return FullRuns(
        config=config,
        n_classes=n_classes,
        input_shape=tuple(images.shape[1:]),
        mean=mean.numpy(),
        std=std.numpy(),
        epoch_correct=np.stack(correct, 1),
        epoch_true_prob=np.stack(true_prob, 1),
        checkpoint_epochs=epochs,
        checkpoints=checkpoints,
        epoch_lr=_epoch_lr(config, len(labels)),
        train_seconds=time.perf_counter() - started,
        record_seconds=recording[0],
    )
