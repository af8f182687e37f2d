"""Training into the shard store: incremental, resumable, and the same on a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from longtail.dask_worker import worker_device
from longtail.executors import DaskExecutor, LocalExecutor, TrainingData, train_shard, train_with_store
from longtail.nets.config import TrainConfig, available_cpus
from longtail.pipelines.sampling.nodes import subset_mask
from longtail.shards import ARRAYS, ShardStore
from longtail.sources import load_source

# float64: models grouped into other shards, or trained in processes with other thread
# counts, run other kernels; in float64 their rounding (~1e-16) stays far below the 1e-9 the
# comparisons allow, on any CPU, while a model trained on other data differs by > 1e-3.
CONFIG = TrainConfig(model="mlp", hidden_sizes=(16,), epochs=2, batch_size=64, lr=0.05, device="cpu", precision="fp64")


@pytest.fixture(scope="module")
def data() -> TrainingData:
    digits = load_source("digits").train
    return TrainingData(digits.images[:300], digits.labels[:300], digits.images[300:400], digits.labels[300:400], 10)


def masks(n_models: int) -> np.ndarray:
    return np.stack([subset_mask(300, 210, seed=0, model_index=t) for t in range(n_models)])


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], exact: bool = True) -> None:
    """Equal arrays; with ``exact=False`` floats may differ by float64 rounding (other
    kernels), which the float32 results see at most as a flip of their last bit (one ulp
    is at most 1.2e-7 relative)."""
    for name in ARRAYS:
        if exact or a[name].dtype == np.bool_:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=3e-7, atol=1e-9, err_msg=name)


def test_more_models_train_only_the_new_ones(tmp_path: Path, data: TrainingData) -> None:
    store = ShardStore(tmp_path, {"test": "incremental"})
    logged: list[tuple[int, int]] = []
    first, trained = train_with_store(store, masks(6), data, CONFIG, 4, LocalExecutor(), lambda s, m: logged.append((s.start, s.stop)))
    assert trained == 6 and logged == [(0, 4), (4, 6)]
    grown, trained = train_with_store(store, masks(10), data, CONFIG, 4, LocalExecutor(), lambda s, m: logged.append((s.start, s.stop)))
    assert trained == 4 and logged[2:] == [(6, 8), (8, 10)]
    assert_same({n: a[:6] for n, a in grown.items()}, first)
    fresh = train_shard(data, masks(10), 0, CONFIG).arrays
    assert_same(grown, fresh, exact=False)


def test_a_rerun_retrains_only_a_damaged_shard(tmp_path: Path, data: TrainingData) -> None:
    store = ShardStore(tmp_path, {"test": "damage"})
    before, _ = train_with_store(store, masks(8), data, CONFIG, 4, LocalExecutor())
    damaged = store.path(4, 8)
    damaged.write_bytes(damaged.read_bytes()[:-50])
    after, trained = train_with_store(store, masks(8), data, CONFIG, 4, LocalExecutor())
    assert trained == 4
    assert_same(after, before)


def test_dask_local_cluster_gives_the_local_results(tmp_path: Path, data: TrainingData) -> None:
    local, _ = train_with_store(ShardStore(tmp_path / "local", {"t": 1}), masks(8), data, CONFIG, 2, LocalExecutor())
    with DaskExecutor(address=None, workers=2) as executor:
        distributed, trained = train_with_store(ShardStore(tmp_path / "dask", {"t": 1}), masks(8), data, CONFIG, 2, executor)
        workers = executor._client.scheduler_info()["workers"].values()
        # torch's thread count is per process: after the shards above, each worker's (a function
        # of torch, which the workers can import; they cannot import this test module)
        threads = set(executor._client.run(torch.get_num_threads).values())
    assert trained == 8
    assert_same(distributed, local, exact=False)  # other processes, other thread counts
    assert [w["nthreads"] for w in workers] == [1, 1]  # one shard at a time per worker
    assert threads == {max(1, available_cpus() // 2)}  # the worker's share of the cores, not threads x threads


def test_a_worker_with_two_threads_trains_one_shard_at_a_time(tmp_path: Path, data: TrainingData) -> None:
    """A plain `dask worker` runs as many tasks at once as it has threads, and a shard sets
    torch's process-wide state: a worker process must train one shard at a time whatever its
    thread count. On an external cluster whose one worker has 2 threads, the worker's own
    state, sampled all along, never shows two shards executing; it trains with every core its
    process may use, and the models are the local ones."""
    import threading  # noqa: PLC0415

    from distributed import LocalCluster  # noqa: PLC0415

    local, _ = train_with_store(ShardStore(tmp_path / "local", {"t": 1}), masks(8), data, CONFIG, 2, LocalExecutor())
    executing: list[int] = []
    done = threading.Event()
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=None) as cluster,
        DaskExecutor(address=cluster.scheduler_address, workers=1) as executor,
    ):

        def sample() -> None:  # a lambda: the worker cannot import this module, it gets the code itself
            while not done.wait(0.005):
                executing.extend(executor._client.run(lambda dask_worker: len(dask_worker.state.executing)).values())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            distributed, trained = train_with_store(ShardStore(tmp_path / "dask", {"t": 1}), masks(8), data, CONFIG, 2, executor)
        finally:
            done.set()
            sampler.join()
        (threads,) = executor._client.run(torch.get_num_threads).values()
        (worker,) = executor._client.scheduler_info()["workers"].values()
    assert worker["nthreads"] == 2 and trained == 8
    assert max(executing) == 1 and executing.count(1) >= 3, executing  # sampled while shards trained
    assert threads == available_cpus()
    assert_same(distributed, local, exact=False)


@pytest.mark.parametrize(
    ("device", "name", "n_gpus", "expected"),
    [
        ("cpu", 3, 4, "cpu"),
        ("auto", 3, 0, "auto"),  # no GPU: the trainer resolves auto to the CPU
        ("cuda:2", 0, 4, "cuda:2"),  # explicit: kept
        ("cuda", 5, 4, "cuda:1"),  # LocalCluster worker 5 of a 4-GPU node
        ("auto", "tcp-gpu-3", 4, "cuda:3"),  # dask worker --name tcp-gpu-3
        ("cuda", "anything", 1, "cuda:0"),  # CUDA_VISIBLE_DEVICES gave it one GPU
    ],
)
def test_workers_are_pinned_to_gpus_deterministically(device, name, n_gpus, expected) -> None:
    assert worker_device(device, name, n_gpus) == expected


def test_a_worker_without_an_index_on_a_multi_gpu_node_is_refused() -> None:
    with pytest.raises(ValueError, match="'scheduler-side'.*CUDA_VISIBLE_DEVICES"):
        worker_device("cuda", "scheduler-side", 2)
