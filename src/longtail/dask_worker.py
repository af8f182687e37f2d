"""What runs inside a Dask worker process: the shard task, the device and threads it trains
with, and the plugin that lets each worker process train one shard at a time. Imported by
``executors.DaskExecutor`` only, as it needs ``distributed``.

A shard sets state that belongs to its whole process: torch's CPU thread count, the current
CUDA device and, under ``precision: tf32``, cuBLAS's matmul precision during each epoch. Two
shards running at once in one process (a worker with several threads) would change it under
each other: threads × cores, or one shard's evaluation run in TF32, so that models stored as
``tf32`` would differ from run to run. So every worker, whatever its thread count, holds one
``SHARD_SLOT`` and every shard task asks for it, and the process's settings are made once.
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace

import numpy as np
import torch
from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from longtail.executors import TrainingData, train_shard
from longtail.nets.config import TrainConfig, available_cpus
from longtail.shards import Shard

#: A resource each worker holds one of, and each shard task asks for.
SHARD_SLOT = "longtail-shard"


class OneShardAtATime(WorkerPlugin):
    """Gives every worker of the cluster, present or joining later, its one ``SHARD_SLOT``."""

    name = "longtail-one-shard-at-a-time"
    idempotent = True  # registered by every run on the cluster, set up once per worker

    async def setup(self, worker: object) -> None:
        await worker.set_resources(**{SHARD_SLOT: 1})


def worker_device(device: str, worker_name: object, n_gpus: int) -> str:
    """The device a Dask worker trains on. ``cpu``, ``mps`` and ``cuda:N`` are kept; ``cuda``
    and ``auto`` on a GPU worker are pinned to one GPU: the only one the worker sees (as when
    each worker is started with its own ``CUDA_VISIBLE_DEVICES``), else GPU (worker index mod
    #GPUs), the index being the worker's name (``LocalCluster``: 0, 1, …) or its trailing
    number (``dask worker --name gpu-3``). Never a hash: pinning must be the same in every
    process."""
    if device not in ("auto", "cuda") or n_gpus == 0:
        return device
    if n_gpus == 1:
        return "cuda:0"
    number = re.search(r"(\d+)$", str(worker_name))
    if number is None:
        raise ValueError(
            f"Dask worker {worker_name!r} sees {n_gpus} GPUs and has no index to pick one by: start one "
            "worker per GPU, each with CUDA_VISIBLE_DEVICES=<gpu> or --name gpu-<index>"
        )
    return f"cuda:{int(number.group(1)) % n_gpus}"


@functools.cache
def _settle_process(device: str, threads: int) -> None:
    """Make ``device`` the current CUDA device (when it is one) and give torch ``threads``
    CPU threads: once per worker process and run configuration, not per shard."""
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)
    torch.set_num_threads(threads)


def worker_config(config: TrainConfig) -> TrainConfig:
    """The worker's device (see ``worker_device``) and CPU threads: those the driver gave it
    (a ``LocalCluster`` shares the cores out), else every core the worker process may use,
    since it trains one shard at a time; both settled for the process (``_settle_process``)."""
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = worker_device(config.device, get_worker().name, n_gpus)
    threads = config.threads or available_cpus()
    _settle_process(device, threads)
    return replace(config, device=device, threads=threads)


def train_shard_on_worker(data: TrainingData, masks: np.ndarray, start: int, config: TrainConfig) -> Shard:
    return train_shard(data, masks, start, worker_config(config))
