"""The shard store: atomic, verified, resumable, and shared safely between processes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest

from longtail.executors import _Heartbeat, train_with_store  # imported once, before the race forks
from longtail.shards import (
    ARRAYS,
    CLAIM_BLOCK,
    Shard,
    ShardStore,
    assemble,
    block_range,
    blocks_of,
    fingerprint,
    missing_ranges,
)

IDENTITY = {"data": "abc", "training": {"lr": 0.1}}


def make_shard(start: int, stop: int, seed: int = 0) -> Shard:
    rng = np.random.default_rng([seed, start])
    k = stop - start
    return Shard(
        start,
        stop,
        {
            "train_correct": rng.random((k, 7)) < 0.5,
            "train_true_prob": rng.random((k, 7)).astype(np.float32),
            "train_margin": rng.normal(size=(k, 7)).astype(np.float32),
            "test_correct": rng.random((k, 3)) < 0.5,
            "test_true_prob": rng.random((k, 3)).astype(np.float32),
            "test_margin": rng.normal(size=(k, 3)).astype(np.float32),
            "epoch_loss": rng.random((k, 2)).astype(np.float32),
        },
    )


def hashes(start: int, stop: int) -> str:
    return f"masks-{start}-{stop}"


def test_a_written_shard_reads_back_identically(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    shard = make_shard(0, 4)
    store.write(shard, hashes(0, 4))
    found = store.load_new(10, hashes)
    assert list(found) == [(0, 4)]
    for name in ARRAYS:
        assert np.array_equal(found[(0, 4)].arrays[name], shard.arrays[name])
        assert found[(0, 4)].arrays[name].dtype == shard.arrays[name].dtype
    assert json.loads((store.folder / "experiment.json").read_text()) == IDENTITY


def test_another_identity_gets_another_folder(tmp_path: Path) -> None:
    assert ShardStore(tmp_path, IDENTITY).folder != ShardStore(tmp_path, {**IDENTITY, "data": "xyz"}).folder


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "other_masks", "garbage"])
def test_a_damaged_shard_is_reported_and_set_aside(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    path = store.write(make_shard(0, 4), hashes(0, 4))
    store.write(make_shard(4, 8), hashes(4, 8))
    data = path.read_bytes()
    masks_hash = hashes
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        # inside the first array's data, after the zip and npy headers
        position = data.index(b"\x93NUMPY") + 200
        path.write_bytes(data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :])
    elif damage == "other_masks":
        masks_hash = lambda start, stop: "different"  # noqa: E731
    else:
        path.write_bytes(b"not a zip file at all")
    assert list(store.load_new(10, masks_hash)) == ([] if damage == "other_masks" else [(4, 8)])
    assert path.exists() and path.name not in caplog.text  # left to the holder of its block's claim
    assert store.try_claim(0, stale_after_s=600)
    found = store.load_new(10, masks_hash)
    if damage == "other_masks":
        assert found == {}
    else:
        assert list(found) == [(4, 8)]
    assert path.name in caplog.text
    assert not path.exists() and path.with_suffix(".corrupt").exists()


def test_a_shard_of_another_experiment_is_refused(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    other = ShardStore(tmp_path, {**IDENTITY, "data": "other"})
    path = other.write(make_shard(0, 4), hashes(0, 4))
    os.replace(path, store.path(0, 4))
    assert store.load_new(10, hashes) == {}


def test_missing_ranges_cover_exactly_what_is_missing() -> None:
    assert missing_ranges(10, 4, []) == [(0, 4), (4, 8), (8, 10)]
    assert missing_ranges(10, 4, [(0, 4), (8, 10)]) == [(4, 8)]
    assert missing_ranges(12, 4, [(0, 4), (4, 8), (8, 10)]) == [(10, 12)]
    assert missing_ranges(9, 4, [(2, 3)]) == [(0, 2), (3, 4), (4, 8), (8, 9)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 9))
        covered = [(int(a), int(a + rng.integers(1, 6))) for a in rng.integers(0, n, 3)]
        todo = missing_ranges(n, k, covered)
        have = np.zeros(n + 10, dtype=bool)
        for a, b in covered:
            have[a:b] = True
        got = np.zeros(n, dtype=int)
        for a, b in todo:
            assert 0 < b - a <= k
            got[a:b] += 1
        assert np.array_equal(got, (~have[:n]).astype(int))


def test_assemble_orders_models_and_detects_gaps() -> None:
    shards = {(4, 8): make_shard(4, 8), (0, 4): make_shard(0, 4), (8, 10): make_shard(8, 10)}
    arrays = assemble(shards, 10)
    assert np.array_equal(arrays["epoch_loss"][4:8], shards[(4, 8)].arrays["epoch_loss"])
    with pytest.raises(ValueError, match="models 4-7 are missing"):
        assemble({(0, 4): shards[(0, 4)], (8, 10): shards[(8, 10)]}, 10)


def test_a_claim_is_exclusive_until_released(tmp_path: Path) -> None:
    store, other = ShardStore(tmp_path, IDENTITY), ShardStore(tmp_path, IDENTITY)
    assert store.try_claim(0, stale_after_s=3600)
    assert not other.try_claim(0, stale_after_s=3600)
    assert other.try_claim(1, stale_after_s=3600)  # blocks are independent
    store.release(0)
    assert other.try_claim(0, stale_after_s=3600)
    store.release(0)  # no longer this store's claim: nothing happens
    assert not store.try_claim(0, stale_after_s=3600)


def test_claims_are_released_however_their_block_is_left(tmp_path: Path) -> None:
    store, other = ShardStore(tmp_path, IDENTITY), ShardStore(tmp_path, IDENTITY)
    assert other.try_claim(2, stale_after_s=3600)
    with pytest.raises(FileNotFoundError), store.claims([0, 1, 2], stale_after_s=3600) as won:
        assert won == {0, 1}  # block 2 is the other run's
        assert not other.try_claim(0, stale_after_s=3600)
        raise FileNotFoundError("a crash between the claim and the training")
    assert other.try_claim(0, stale_after_s=3600) and other.try_claim(1, stale_after_s=3600)


def test_a_claim_file_appears_with_its_content(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    assert store.try_claim(3, stale_after_s=3600)
    (claim,) = tmp_path.glob("*/claim-000003.*")
    assert json.loads(claim.read_text())["pid"] == os.getpid()
    assert not list(tmp_path.glob("*/.*.tmp"))  # the temporary it was linked from is gone


def test_claim_blocks_do_not_depend_on_the_shard_size() -> None:
    assert (CLAIM_BLOCK, list(blocks_of(0, 64)), list(blocks_of(0, 512))) == (64, [0], list(range(8)))
    assert list(blocks_of(60, 70)) == [0, 1] and block_range(1, 100) == (64, 100)


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    code = (
        "import sys; from longtail.shards import ShardStore; "
        f"assert ShardStore(sys.argv[1], {IDENTITY!r}).try_claim(0, 3600)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)  # exits holding the claim
    assert store.try_claim(0, stale_after_s=3600)


def test_fingerprint_sees_content_dtype_and_shape() -> None:
    a = np.arange(6)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.reshape(2, 3))
    assert fingerprint(a) != fingerprint(a.astype(np.int32))
    assert fingerprint(a) != fingerprint(a + (np.arange(6) == 5))


def test_a_failed_shard_write_leaves_no_partial_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    store.write(make_shard(0, 4), hashes(0, 4))

    def disk_full(handle: object, **arrays: np.ndarray) -> None:
        handle.write(b"PK\x03\x04 half a shard")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.write(make_shard(4, 8), hashes(4, 8))
    monkeypatch.undo()
    assert sorted(p.name for p in store.folder.iterdir()) == ["experiment.json", store.path(0, 4).name]
    assert list(store.load_new(10, hashes)) == [(0, 4)]


def _age(lock: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(lock, (past, past))


def _claim_of_another_host(store: ShardStore, block: int) -> Path:
    lock = store.folder / f"claim-{block:06d}.00000000"
    lock.write_text(json.dumps({"host": "another-host", "pid": 1, "time": time.time(), "token": "x"}))
    return lock


def test_a_claim_of_another_host_is_taken_over_once_its_heartbeat_stops(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    lock = _claim_of_another_host(store, 0)
    assert not store.try_claim(0, stale_after_s=600)  # alive as far as we can tell
    _age(lock, 601)
    assert store.try_claim(0, stale_after_s=600)
    (claim,) = store.folder.glob("claim-000000.*")  # the dead claim is cleaned up
    assert json.loads(claim.read_text())["pid"] == os.getpid()


def test_the_heartbeat_keeps_a_claim_in_training_from_being_taken(tmp_path: Path) -> None:
    holder, other = ShardStore(tmp_path, IDENTITY), ShardStore(tmp_path, IDENTITY)
    assert holder.try_claim(0, stale_after_s=600)
    (lock,) = holder.folder.glob("claim-000000.*")
    owner = json.loads(lock.read_text())
    lock.write_text(json.dumps({**owner, "host": "another-host"}))  # as seen from another host
    _age(lock, 601)
    holder.heartbeat()
    assert not other.try_claim(0, stale_after_s=600)
    holder.release(0)
    holder.heartbeat()  # a released claim is not refreshed
    assert other.try_claim(0, stale_after_s=600)


def test_a_run_whose_claim_was_taken_over_does_not_release_the_new_owner(tmp_path: Path) -> None:
    slow, taker, third = (ShardStore(tmp_path, IDENTITY) for _ in range(3))
    assert slow.try_claim(0, stale_after_s=600)
    (lock,) = slow.folder.glob("claim-000000.*")
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "host": "another-host"}))
    _age(lock, 601)  # slow's heartbeat stopped (e.g. a suspended laptop)
    assert taker.try_claim(0, stale_after_s=600)
    slow.release(0)  # wakes up and gives back what it no longer owns
    assert not third.try_claim(0, stale_after_s=600)


def test_training_beats_the_heartbeat_of_its_claims(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, IDENTITY)
    assert store.try_claim(0, stale_after_s=600)
    (lock,) = store.folder.glob("claim-000000.*")
    _age(lock, 601)
    with _Heartbeat(store, interval=0.05):
        time.sleep(0.3)
    assert time.time() - lock.stat().st_mtime < 5


def test_shards_and_claims_are_readable_by_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # atomic_path applies the umask read when longtail.io.atomic was imported: set that one too,
    # or the expected mode would depend on the umask the test run started with (e.g. 0o002)
    monkeypatch.setattr("longtail.io.atomic._UMASK", 0o022)
    previous = os.umask(0o022)
    try:
        store = ShardStore(tmp_path, IDENTITY)
        path = store.write(make_shard(0, 4), hashes(0, 4))
        assert store.try_claim(0, stale_after_s=600)
    finally:
        os.umask(previous)
    for written in (path, store.folder / "experiment.json", *store.folder.glob("claim-*")):
        assert written.stat().st_mode & 0o777 == 0o644, written.name


class _RecordingExecutor:
    """A stand-in workload for the claim race: "trains" a range by logging it (one O_APPEND
    line, atomic) and returning a shard of zeros; with ``crash`` the process dies on its
    first range, before logging or storing anything, leaving its claims behind."""

    def __init__(self, log: Path, crash: bool) -> None:
        self.log, self.crash = log, crash

    def map_unordered(self, data, masks, ranges, config):
        for start, stop in ranges:
            if self.crash:
                os._exit(1)
            time.sleep(0.01)
            with open(self.log, "a") as handle:
                handle.write(f"{os.getpid()} {start} {stop}\n")
            yield make_shard(start, stop)


def _race(root: Path, log: Path, masks: np.ndarray, per_shard: int, crash: bool, barrier) -> None:
    barrier.wait()
    store = ShardStore(root, IDENTITY)
    train_with_store(store, masks, None, None, per_shard, _RecordingExecutor(log, crash), stale_after_s=600, poll_s=0.02)


def test_racing_runs_train_every_model_exactly_once(tmp_path: Path) -> None:
    """Seven runs (CPU-like shards of 16 models, GPU-like of 128) race over one store holding
    the claims of a run that crashed (blocks 0-3) and a dead claim of another host (block 4):
    every model is trained by exactly one run, and the stored shards cover each model once."""
    import multiprocessing  # noqa: PLC0415

    context = multiprocessing.get_context("fork")
    n_models = 6 * CLAIM_BLOCK
    masks = np.random.default_rng(0).random((n_models, 7)) < 0.5
    log = tmp_path / "trained.log"
    crashed = context.Process(target=_race, args=(tmp_path, log, masks[: 4 * CLAIM_BLOCK], 128, True, context.Barrier(1)))
    crashed.start()
    crashed.join(timeout=60)
    assert crashed.exitcode == 1 and len(list(tmp_path.glob("*/claim-*"))) == 4
    _age(_claim_of_another_host(ShardStore(tmp_path, IDENTITY), 4), 601)
    barrier = context.Barrier(7)
    runs = [context.Process(target=_race, args=(tmp_path, log, masks, 16 if i % 2 else 128, False, barrier)) for i in range(7)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert [run.exitcode for run in runs] == [0] * 7
    trained = np.zeros(n_models, dtype=int)
    for line in log.read_text().splitlines():
        _, start, stop = map(int, line.split())
        trained[start:stop] += 1
    assert (trained == 1).all(), np.flatnonzero(trained != 1)
    stored = np.zeros(n_models, dtype=int)
    for start, stop in ShardStore(tmp_path, IDENTITY).stored_ranges():
        stored[start:stop] += 1
    assert (stored == 1).all()


def test_the_same_experiment_in_an_older_format_is_found_beside(tmp_path: Path) -> None:
    identity = {**IDENTITY, "training": {"hidden_sizes": (8,)}}  # a tuple, read back from JSON as a list
    old = ShardStore(tmp_path, {**identity, "format": 2})
    ShardStore(tmp_path, {**identity, "format": 2, "data": "xyz"})  # another experiment
    ShardStore(tmp_path, {**identity, "format": 4})  # a newer format
    new = ShardStore(tmp_path, {**identity, "format": 3})
    assert new.superseded() == [old.folder]
    assert old.superseded() == []
