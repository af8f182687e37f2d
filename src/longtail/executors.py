"""Training shards of models locally or on a Dask cluster, with a resumable shard store.

The driver (the process running ``kedro run``) decides which shards are missing, claims them,
hands them to an executor, and writes each finished shard to the store as it arrives; it also
does all MLflow logging (``on_shard``), since the SQLite store has one writer. Workers only
train. Kedro-free.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

import numpy as np

from longtail.nets.ensemble import TrainConfig, train_ensemble
from longtail.shards import Shard, ShardStore, assemble, fingerprint, missing_ranges

logger = logging.getLogger(__name__)

Range = tuple[int, int]


@dataclass(frozen=True)
class TrainingData:
    """What every shard trains and is evaluated on (sent once to each Dask worker)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    n_classes: int


def train_shard(data: TrainingData, masks: np.ndarray, start: int, config: TrainConfig) -> Shard:
    """Train models ``start`` … ``start + len(masks) − 1`` and evaluate them on both splits."""
    result = train_ensemble(
        data.train_images,
        data.train_labels,
        masks,
        np.arange(start, start + len(masks)),
        config,
        data.n_classes,
        eval_sets={"train": (data.train_images, data.train_labels), "test": (data.test_images, data.test_labels)},
    )
    return Shard(
        start,
        start + len(masks),
        {
            "train_correct": result.correct["train"],
            "train_true_prob": result.true_prob["train"],
            "test_correct": result.correct["test"],
            "test_true_prob": result.true_prob["test"],
            "epoch_loss": result.epoch_loss,
        },
    )


class LocalExecutor:
    """Trains the shards one after another in this process."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map_unordered(
        self, data: TrainingData, masks: np.ndarray, ranges: Sequence[Range], config: TrainConfig
    ) -> Iterator[Shard]:
        for start, stop in ranges:
            yield train_shard(data, masks[start:stop], start, config)


def _worker_config(config: TrainConfig) -> TrainConfig:
    """A worker trains with as many CPU threads as it was given (not every core of the node,
    which its sibling workers share); on a multi-GPU node each worker is pinned to one GPU
    (worker name mod #GPUs)."""
    import torch  # noqa: PLC0415
    from distributed import get_worker  # noqa: PLC0415

    worker = get_worker()
    config = replace(config, threads=worker.state.nthreads)
    if config.device != "auto" or torch.cuda.device_count() < 2:
        return config
    index = worker.name if isinstance(worker.name, int) else abs(hash(worker.name))
    return replace(config, device=f"cuda:{index % torch.cuda.device_count()}")


def _train_shard_on_worker(data: TrainingData, masks: np.ndarray, start: int, config: TrainConfig) -> Shard:
    return train_shard(data, masks, start, _worker_config(config))


class DaskExecutor:
    """Submits shards to a ``dask.distributed`` cluster: the one at ``address``, or a
    ``LocalCluster`` of ``workers`` processes started (on 127.0.0.1) for the run."""

    def __init__(self, address: str | None, workers: int) -> None:
        self.address, self.workers = address, workers
        self._cluster = None
        self._client = None

    def __enter__(self) -> DaskExecutor:
        from distributed import Client, LocalCluster  # noqa: PLC0415

        if self.address:
            self._client = Client(self.address)
        else:
            threads = max(1, len(os.sched_getaffinity(0)) // self.workers)
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=threads,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self._client = Client(self._cluster)
        logger.info("training on Dask cluster %s", self._client.scheduler.address)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def map_unordered(
        self, data: TrainingData, masks: np.ndarray, ranges: Sequence[Range], config: TrainConfig
    ) -> Iterator[Shard]:
        from distributed import as_completed  # noqa: PLC0415

        shared = self._client.scatter(data, broadcast=True)
        futures = [
            self._client.submit(_train_shard_on_worker, shared, masks[start:stop], start, config, pure=False)
            for start, stop in ranges
        ]
        for future in as_completed(futures):
            yield future.result()


def train_in_tasks(
    executor: LocalExecutor | DaskExecutor, data: TrainingData, masks: np.ndarray, config: TrainConfig, task_size: int
) -> dict[str, np.ndarray]:
    """Train every row of ``masks`` (model ids = row numbers) in tasks of ``task_size`` rows
    on ``executor``, without a store (for small, cheap-to-redo sets such as the removal models)."""
    ranges = [(start, min(start + task_size, len(masks))) for start in range(0, len(masks), task_size)]
    shards = {(shard.start, shard.stop): shard for shard in executor.map_unordered(data, masks, ranges, config)}
    return assemble(shards, len(masks))


def make_executor(kind: str, address: str | None = None, workers: int = 1) -> LocalExecutor | DaskExecutor:
    if kind == "local":
        return LocalExecutor()
    if kind == "dask":
        return DaskExecutor(address, workers)
    raise ValueError(f"unknown executor {kind!r}; allowed: 'local', 'dask'")


class _Progress:
    """Logs models done / total, models per second and time left, after each shard."""

    def __init__(self, total: int, reused: int) -> None:
        self.total, self.done, self.trained = total, reused, 0
        self.started = time.perf_counter()
        if reused:
            logger.info("reusing %d/%d models from the shard store", reused, total)

    def update(self, shard: Shard) -> None:
        count = shard.stop - shard.start
        self.done += count
        self.trained += count
        rate = self.trained / (time.perf_counter() - self.started)
        logger.info(
            "models %d/%d (%.2f models/s, %.0f s left)", self.done, self.total, rate, (self.total - self.done) / rate
        )


def train_with_store(
    store: ShardStore,
    masks: np.ndarray,
    data: TrainingData,
    config: TrainConfig,
    per_shard: int,
    executor: LocalExecutor | DaskExecutor,
    on_shard: Callable[[Shard, np.ndarray], None] = lambda shard, masks: None,
    stale_after_s: float = 600.0,
    poll_s: float = 5.0,
) -> tuple[dict[str, np.ndarray], int]:
    """Make the store hold every model of ``masks`` and return their arrays and how many were
    trained by this call. Intact stored shards are reused; missing ones are claimed, trained
    by ``executor`` and written as they finish (``on_shard(shard, its masks)`` after each
    write); shards claimed by another live process are waited for, and this run's claims are
    refreshed every ``stale_after_s / 4`` seconds so that no other run takes them over."""
    n_models = len(masks)

    def masks_hash(start: int, stop: int) -> str:
        return fingerprint(masks[start:stop])

    shards = store.load_new(n_models, masks_hash)
    progress = _Progress(n_models, sum(stop - start for start, stop in shards))
    with _Heartbeat(store, stale_after_s / 4):
        while todo := missing_ranges(n_models, per_shard, list(shards)):
            mine = [r for r in todo if store.try_claim(*r, stale_after_s)]
            if not mine:
                logger.info("waiting for %d shards claimed by another run in %s", len(todo), store.folder)
                time.sleep(poll_s)
            else:
                try:
                    for shard in executor.map_unordered(data, masks, mine, config):
                        store.write(shard, masks_hash(shard.start, shard.stop))
                        store.release(shard.start, shard.stop)
                        shards[(shard.start, shard.stop)] = shard
                        progress.update(shard)
                        on_shard(shard, masks[shard.start : shard.stop])
                finally:
                    for start, stop in mine:
                        store.release(start, stop)
            shards.update(store.load_new(n_models, masks_hash, known=shards))
    return assemble(shards, n_models), progress.trained


class _Heartbeat:
    """Refreshes the store's claims every ``interval`` seconds on a daemon thread."""

    def __init__(self, store: ShardStore, interval: float) -> None:
        self._store, self._interval = store, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            self._store.heartbeat()

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
