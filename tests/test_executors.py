"""Training into the shard store: incremental, resumable, and the same on a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longtail.executors import DaskExecutor, LocalExecutor, TrainingData, train_shard, train_with_store
from longtail.nets.ensemble import TrainConfig
from longtail.pipelines.sampling.nodes import subset_mask
from longtail.shards import ARRAYS, ShardStore
from longtail.sources import load_source

CONFIG = TrainConfig(model="mlp", hidden_sizes=(16,), epochs=2, batch_size=64, lr=0.05, device="cpu")


@pytest.fixture(scope="module")
def data() -> TrainingData:
    digits = load_source("digits").train
    return TrainingData(digits.images[:300], digits.labels[:300], digits.images[300:400], digits.labels[300:400], 10)


def masks(n_models: int) -> np.ndarray:
    return np.stack([subset_mask(300, 210, seed=0, model_index=t) for t in range(n_models)])


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], exact: bool = True) -> None:
    """Equal arrays; with ``exact=False`` floats may differ by rounding (models grouped into
    shards differently run batched kernels of other shapes)."""
    for name in ARRAYS:
        if exact or a[name].dtype == np.bool_:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


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
    assert trained == 8
    assert_same(distributed, local)
