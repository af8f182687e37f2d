"""Drivers sharing one shard store, each a process of its own training real models
(tests/store_driver.py): damaged shards met by several at once, a driver killed mid-shard."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longtail.executors import LocalExecutor, TrainingData, train_with_store
from longtail.pipelines.sampling.nodes import subset_mask
from longtail.estimate import memorization
from longtail.shards import CLAIM_BLOCK, Shard, ShardStore, fingerprint
from longtail.sources import load_source
from tests.store_driver import CONFIG, IDENTITY, save_study
from tests.test_executors import assert_same

DRIVER = str(Path(__file__).with_name("store_driver.py"))
N_TRAIN = 40


@pytest.fixture(scope="module")
def data() -> TrainingData:
    digits = load_source("digits").train
    return TrainingData(digits.images[:N_TRAIN], digits.labels[:N_TRAIN], digits.images[100:120], digits.labels[100:120], 10)


def study_masks(n_models: int) -> np.ndarray:
    return np.stack([subset_mask(N_TRAIN, 28, seed=0, model_index=t) for t in range(n_models)])


def uninterrupted(root: Path, data: TrainingData, masks: np.ndarray) -> dict[str, np.ndarray]:
    """What a single run, alone on its own store, ends with."""
    arrays, trained = train_with_store(ShardStore(root, IDENTITY), masks, data, CONFIG, CLAIM_BLOCK, LocalExecutor())
    assert trained == len(masks)
    return arrays


def store_of(root: Path, masks: np.ndarray, arrays: dict[str, np.ndarray], ranges: Sequence[tuple[int, int]]) -> ShardStore:
    """A store holding the shards ``ranges`` of these models, as a run storing them would leave it."""
    store = ShardStore(root, IDENTITY)
    for start, stop in ranges:
        store.write(Shard(start, stop, {n: a[start:stop] for n, a in arrays.items()}), fingerprint(masks[start:stop]))
    return store


def damage(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-50])  # truncated, as by a full disk or a copy cut short


class Drivers:
    """Driver processes on one store, released together (``release``)."""

    def __init__(self, tmp_path: Path, data: TrainingData, masks: np.ndarray, root: Path) -> None:
        self.tmp, self.root, self.study = tmp_path, root, tmp_path / "study.npz"
        self.log, self.go = tmp_path / "trained.log", tmp_path / "go"
        save_study(self.study, data, masks)
        self.processes: list[subprocess.Popen] = []

    def start(self, per_shard: int, wait_for_go: bool = True) -> subprocess.Popen:
        result = self.tmp / f"result-{len(self.processes)}.npz"
        args = [self.study, self.root, per_shard, self.log, result] + ([self.go] if wait_for_go else [])
        process = subprocess.Popen([sys.executable, DRIVER, *map(str, args)], stderr=subprocess.PIPE, text=True)
        process.result = result
        self.processes.append(process)
        return process

    def release(self) -> None:
        """Let every driver started so far go at once, when all are ready."""
        deadline = time.time() + 120
        while len(list(self.tmp.glob("go.ready.*"))) < len(self.processes) and time.time() < deadline:
            assert all(process.poll() is None for process in self.processes), "a driver exited before the start"
            time.sleep(0.01)
        self.go.touch()

    def finish(self, processes: Sequence[subprocess.Popen]) -> list[dict[str, np.ndarray]]:
        """Each driver's final arrays, once it has exited successfully."""
        results = []
        for process in processes:
            _, errors = process.communicate(timeout=120)
            assert process.returncode == 0, errors[-3000:]
            with np.load(process.result, allow_pickle=False) as arrays:
                results.append(dict(arrays))
        return results

    def times_trained(self, n_models: int) -> np.ndarray:
        counts = np.zeros(n_models, dtype=int)
        for line in self.log.read_text().splitlines() if self.log.exists() else ():
            _, start, stop = map(int, line.split())
            counts[start:stop] += 1
        return counts


def claim_holders(store: ShardStore) -> dict[int, set[int]]:
    """pid -> the blocks whose latest claim it holds (a release marker holds nothing)."""
    holders: dict[int, set[int]] = {}
    for block in {int(path.name.split(".")[0].removeprefix("claim-")) for path in store.folder.glob("claim-*")}:
        generations = store._generations(block)
        try:
            owner = json.loads(generations[-1][1].read_text()) if generations else {"released": True}
        except FileNotFoundError:  # superseded while we looked
            continue
        if not owner.get("released"):
            holders.setdefault(owner["pid"], set()).add(block)
    return holders


def test_two_drivers_meeting_the_same_damaged_shards_set_each_aside_once(tmp_path: Path, data: TrainingData) -> None:
    """Two drivers start on a store of 64 shards of 2 models, 8 of them truncated, within a
    millisecond or two of each other, so both meet the damaged files. Only the holder of a
    block's claim touches its files: both finish with the uninterrupted run's models, each
    damaged shard is set aside once and retrained once, and no claim stays held."""
    n_models = 2 * CLAIM_BLOCK
    masks = study_masks(n_models)
    reference = uninterrupted(tmp_path / "reference", data, masks)
    store = store_of(tmp_path / "shared", masks, reference, [(start, start + 2) for start in range(0, n_models, 2)])
    damaged = [(start, start + 2) for start in range(14, n_models, 16)]
    for start, stop in damaged:
        damage(store.path(start, stop))
    drivers = Drivers(tmp_path, data, masks, tmp_path / "shared")
    runs = [drivers.start(per_shard=2) for _ in range(2)]
    drivers.release()
    for result in drivers.finish(runs):
        assert_same(result, reference, exact=False)
    expected = np.zeros(n_models, dtype=int)
    for start, stop in damaged:
        expected[start:stop] = 1
    assert np.array_equal(drivers.times_trained(n_models), expected)
    assert sorted(p.name for p in store.folder.glob("*.corrupt")) == sorted(store.path(*r).with_suffix(".corrupt").name for r in damaged)
    assert claim_holders(store) == {}


def kill_a_driver_mid_shard(store: ShardStore, drivers: Sequence[subprocess.Popen]) -> subprocess.Popen:
    """SIGKILL the first driver seen holding claims for 0.3 s: blocks it claimed and has not
    finished (it releases each once its shards are stored), so it dies in the middle of them."""
    seen: dict[int, float] = {}
    deadline = time.time() + 120
    while time.time() < deadline:
        holders = claim_holders(store)
        for pid in holders:
            seen.setdefault(pid, time.time())
        victim = next((d for d in drivers if d.pid in holders and time.time() - seen[d.pid] > 0.3), None)
        if victim is not None:
            victim.send_signal(signal.SIGKILL)
            victim.wait()  # reaped: a zombie would still look alive to the claim protocol
            return victim
        time.sleep(0.005)
    raise AssertionError("no driver ever held a claim")


def test_three_drivers_a_damaged_shard_and_a_killed_driver_end_with_an_uninterrupted_runs_scores(
    tmp_path: Path, data: TrainingData
) -> None:
    """Three drivers, storing shards of 64 (CPU-sized), 512 (GPU-sized) and 64 models, start
    at once on a store of 10 blocks that holds 3 shards, one of them truncated; one driver is
    killed mid-shard, then restarted. Every driver ends with the scores of an uninterrupted
    single run, no claim stays held, no model is trained twice (nor the intact ones again),
    and the store covers every model exactly once."""
    n_models = 10 * CLAIM_BLOCK
    masks = study_masks(n_models)
    reference = uninterrupted(tmp_path / "reference", data, masks)
    store = store_of(tmp_path / "shared", masks, reference, [(0, 64), (64, 128), (128, 192)])
    damage(store.path(64, 128))
    drivers = Drivers(tmp_path, data, masks, tmp_path / "shared")
    runs = [drivers.start(per_shard) for per_shard in (CLAIM_BLOCK, 512, CLAIM_BLOCK)]
    drivers.release()
    victim = kill_a_driver_mid_shard(store, runs)
    survivors = [run for run in runs if run is not victim]
    restarted = drivers.start(per_shard=CLAIM_BLOCK if victim is not runs[1] else 512, wait_for_go=False)
    expected_scores = memorization(masks, reference["train_correct"])
    for result in drivers.finish([*survivors, restarted]):
        assert_same(result, reference, exact=False)
        pd.testing.assert_frame_equal(memorization(masks, result["train_correct"]), expected_scores)
    assert claim_holders(store) == {}
    trained = drivers.times_trained(n_models)
    assert trained.max() == 1 and not trained[:64].any() and not trained[128:192].any()
    stored = np.zeros(n_models, dtype=int)
    for start, stop in store.stored_ranges():
        stored[start:stop] += 1
    assert (stored == 1).all(), np.flatnonzero(stored != 1)
    assert [p.name for p in store.folder.glob("*.corrupt")] == [store.path(64, 128).with_suffix(".corrupt").name]
