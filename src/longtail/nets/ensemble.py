"""Train many small models, each on its own subset of the data, as one batched computation:
the planner.

:func:`train_ensemble` decides which implementation of the loop's ``Ensemble`` interface holds
a shard's models (built-in networks stacked, :mod:`longtail.nets.stacking`; other modules
vmapped, :mod:`longtail.nets.functional`, or one at a time when they cannot be), with which
recipe they train, and how many make one shard (:mod:`longtail.nets.sizing`); the training
itself is :mod:`longtail.nets.loop`'s. :func:`train_one_by_one` is the plain per-model reference:
the same loop with one model per shard, so both compute the same models up to floating-point
rounding.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch

from longtail.nets.airbench import Airbench94
from longtail.nets.config import TrainConfig, available_cpus, precision_problem, resolve_device
from longtail.nets.functional import VmappedEnsemble, vmappable
from longtail.nets.loop import EnsembleResult, Pack, Recipe, Shard, SingleModel, prepare_data, train_shard
from longtail.nets.models import is_builtin
from longtail.nets.sizing import models_in_memory
from longtail.nets.stacking import StackedModels

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


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
        margin=_joined(results, "margin"),
        epoch_loss=np.concatenate([r.epoch_loss for r in results]),
        state_dicts=None if first.state_dicts is None else [s for r in results for s in r.state_dicts],
        epoch_correct=_joined(results, "epoch_correct"),
        epoch_true_prob=_joined(results, "epoch_true_prob"),
    )


def _plan_shards(masks: np.ndarray, model_ids: np.ndarray, per_shard: int) -> Iterator[Shard]:
    """Group models by subset size (one batch shape per shard), then cut groups into shards."""
    sizes = masks.sum(1)
    for size in np.unique(sizes):
        rows = np.flatnonzero(sizes == size)
        for start in range(0, len(rows), per_shard):
            chunk = rows[start : start + per_shard]
            yield Shard(chunk, model_ids[chunk], np.stack([np.flatnonzero(masks[r]) for r in chunk]))


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
        margin=reordered(result.margin),
        epoch_loss=result.epoch_loss[inverse],
        state_dicts=None if result.state_dicts is None else [result.state_dicts[i] for i in inverse],
        epoch_correct=reordered(result.epoch_correct),
        epoch_true_prob=reordered(result.epoch_true_prob),
    )


def _one_call_per_process_at_a_time(train: Callable[..., EnsembleResult]) -> Callable[..., EnsembleResult]:
    """``train`` holding a process-wide lock. Training sets state that belongs to the whole
    process (torch's CPU thread count; under tf32, cuBLAS's matmul precision during each
    epoch): a call running at once in another thread (Kedro's ThreadRunner, a Dask worker
    with several threads) would change it under this one."""
    lock = threading.RLock()

    @functools.wraps(train)
    def locked(*args: object, **kwargs: object) -> EnsembleResult:
        with lock:
            return train(*args, **kwargs)

    return locked


@_one_call_per_process_at_a_time
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
    pack: Pack | None = None,
) -> EnsembleResult:
    """Train model k on ``images[masks[k]]`` for every row k, many models at a time.

    images: float32 (N, C, H, W) in [0, 1]; labels: int (N,); masks: bool (K, N), rows may
    differ in size; model_ids: (K,) global model indices, which together with ``config.seed``
    alone determine each model's initialisation and data order. Every model is evaluated on
    every example of every eval set. Results are in the input row order. ``pack`` holds one
    shard's models (default: :func:`implementation`); ``SingleModel`` trains them one at a time.
    """
    masks, model_ids = np.asarray(masks, dtype=bool), np.asarray(model_ids, dtype=np.int64)
    _validate(images, labels, masks, model_ids)
    device = resolve_device(config.device)
    problem = precision_problem(config.precision, config.device)
    if problem:
        raise ValueError(f"precision={config.precision!r}: {problem}")
    if device.type == "cpu":
        torch.set_num_threads(config.threads or available_cpus())
    data = prepare_data(images, labels, eval_sets, n_classes, device, config.dtype)
    pack = pack or implementation(config, data.input_shape, n_classes, data.device)
    per_shard = 1 if pack is SingleModel else models_in_memory(config, data.device, data.input_shape, n_classes)
    recipe = recipe_for(config)
    total, done, started = len(masks), 0, time.perf_counter()
    results: list[EnsembleResult] = []
    shards = list(_plan_shards(masks, model_ids, per_shard))
    for shard in shards:
        results.append(train_shard(pack, shard, data, recipe))
        done += len(shard.rows)
        rate = done / (time.perf_counter() - started)
        logger.info("trained %d/%d models (%.2f models/s, %.0f s left)", done, total, rate, (total - done) / rate)
        if progress is not None:
            progress(done, total)
    return _reorder(_concat(results), np.concatenate([s.rows for s in shards]))


def implementation(config: TrainConfig, input_shape: tuple[int, int, int], n_classes: int, device: torch.device) -> Pack:
    """Built-in networks train stacked (faster than vmap, docs/benchmarks.md); any other module
    vmapped, or one model at a time when vmap cannot run it."""
    if is_builtin(config.model):
        return StackedModels
    if vmappable(config.model, input_shape, n_classes, device):
        return VmappedEnsemble
    return SingleModel


#: Networks that come with their own recipe; every other trains with the loop's SGD recipe.
RECIPES: dict[str, type[Recipe]] = {"airbench94": Airbench94}


def recipe_for(config: TrainConfig) -> Recipe:
    """How ``config.model`` trains: its own recipe, or the trainer's SGD recipe."""
    return RECIPES.get(config.model, Recipe)(config)


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
    return train_ensemble(images, labels, masks, model_ids, config, n_classes, eval_sets, progress, pack=SingleModel)
