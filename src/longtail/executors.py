"""Training shards of models locally or on a Dask cluster, with a resumable shard store.

The driver (the process running ``kedro run``) decides which shards are missing, claims them,
hands them to an executor, and writes each finished shard to the store as it arrives; it also
does all MLflow logging (``on_shard``), since the SQLite store has one writer. Workers only
train. Kedro-free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

import numpy as np

from longtail.nets.config import TrainConfig, available_cpus
from longtail.nets.ensemble import train_ensemble
from longtail.shards import Shard, ShardStore, assemble, block_range, blocks_of, fingerprint, missing_ranges

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
            "train_margin": result.margin["train"],
            "test_correct": result.correct["test"],
            "test_true_prob": result.true_prob["test"],
            "test_margin": result.margin["test"],
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


class DaskExecutor:
    """Submits shards to a ``dask.distributed`` cluster: the one at ``address``, or a
    ``LocalCluster`` of ``workers`` processes started (on 127.0.0.1) for the run.

    A worker process trains one shard at a time, whatever its thread count: each worker is
    given one ``dask_worker.SHARD_SLOT`` resource and each shard asks for it (see
    ``longtail.dask_worker``). A ``LocalCluster`` worker trains with its share of the cores as
    torch threads (never threads × threads), a worker of an external cluster with every core
    its process may use; where workers advertise a ``GPU`` resource, each shard also asks for
    one GPU.
    """

    def __init__(self, address: str | None, workers: int) -> None:
        self.address, self.workers = address, workers
        self._cluster = None
        self._client = None

    def __enter__(self) -> DaskExecutor:
        from distributed import Client, LocalCluster  # noqa: PLC0415

        from longtail.dask_worker import OneShardAtATime  # noqa: PLC0415 - it needs distributed

        if self.address:
            self._client = Client(self.address)
        else:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self._client = Client(self._cluster)
        self._client.register_plugin(OneShardAtATime())
        logger.info("training on Dask cluster %s", self._client.scheduler.address)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def _task_config(self, config: TrainConfig) -> TrainConfig:
        if self._cluster is None or config.threads is not None:
            return config
        return replace(config, threads=max(1, available_cpus() // self.workers))

    def _task_resources(self) -> dict[str, int]:
        from longtail.dask_worker import SHARD_SLOT  # noqa: PLC0415

        workers = self._client.scheduler_info()["workers"].values()
        gpu = {"GPU": 1} if any("GPU" in w.get("resources", {}) for w in workers) else {}
        return {SHARD_SLOT: 1, **gpu}

    def map_unordered(
        self, data: TrainingData, masks: np.ndarray, ranges: Sequence[Range], config: TrainConfig
    ) -> Iterator[Shard]:
        from distributed import as_completed  # noqa: PLC0415

        from longtail.dask_worker import train_shard_on_worker  # noqa: PLC0415

        shared = self._client.scatter(data, broadcast=True)
        config, resources = self._task_config(config), self._task_resources()
        futures = [
            self._client.submit(
                train_shard_on_worker, shared, masks[start:stop], start, config, pure=False, resources=resources
            )
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
    trained by this call. Intact stored shards are reused; the blocks (of ``CLAIM_BLOCK``
    models) holding missing models are claimed, their missing models trained by ``executor``
    in shards of at most ``per_shard`` and written as they finish (``on_shard(shard, its
    masks)`` after each write); blocks claimed by another live run are waited for, and this
    run's claims are refreshed every ``stale_after_s / 4`` seconds so that no other run takes
    them over."""
    n_models = len(masks)

    def masks_hash(start: int, stop: int) -> str:
        return fingerprint(masks[start:stop])

    shards = store.load_new(n_models, masks_hash)
    progress = _Progress(n_models, sum(stop - start for start, stop in shards))
    with _Heartbeat(store, stale_after_s / 4):
        while todo := missing_ranges(n_models, per_shard, list(shards)):
            wanted = sorted({block for start, stop in todo for block in blocks_of(start, stop)})
            with store.claims(wanted, stale_after_s) as mine:  # released on leaving, also on error
                # a block's shards are written before its claim is released: whatever another run
                # finished before we won the claim is in the store now, and is not trained again
                # (a damaged shard of a block we now hold is set aside here)
                shards.update(store.load_new(n_models, masks_hash, known=shards))
                others = [block_range(b, n_models) for b in range(blocks_of(0, n_models).stop) if b not in mine]
                ranges = missing_ranges(n_models, per_shard, list(shards) + others)
                pending = Counter(block for start, stop in ranges for block in blocks_of(start, stop))
                if not mine:
                    logger.info("waiting for %d blocks claimed by another run in %s", len(wanted), store.folder)
                    time.sleep(poll_s)
                for shard in executor.map_unordered(data, masks, ranges, config) if ranges else ():
                    store.write(shard, masks_hash(shard.start, shard.stop))
                    shards[(shard.start, shard.stop)] = shard
                    for block in blocks_of(shard.start, shard.stop):
                        pending[block] -= 1
                        if not pending[block]:
                            store.release(block)  # its last shard is stored (claims() skips it then)
                    progress.update(shard)
                    on_shard(shard, masks[shard.start : shard.stop])
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
