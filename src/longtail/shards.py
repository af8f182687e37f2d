"""A resumable store of trained shards, in the spirit of MadryLab's datamodels: a shard is a
range of model indices trained together; each finished shard is one ``.npz`` file (no
pickle) written atomically, carrying a checksum, the experiment's identity and the hash of
the subset masks it was trained on. Whatever is stored and intact is reused; whatever is
missing, truncated or altered is trained again. Kedro-free.

Layout: ``<root>/<experiment id>/experiment.json`` (what the id stands for) and
``<root>/<experiment id>/shard-<start>-<stop>.npz`` (models start … stop − 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longtail.io.atomic import atomic_path

logger = logging.getLogger(__name__)

ARRAYS = ("train_correct", "train_true_prob", "test_correct", "test_true_prob", "epoch_loss")
_META = "__meta__"


def fingerprint(*arrays: np.ndarray) -> str:
    """A short content hash of arrays (dtype, shape and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def experiment_id(identity: Mapping[str, Any]) -> str:
    """The store folder of an experiment: a hash of its identity (a JSON-able mapping)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Shard:
    """The trained models ``start`` … ``stop`` − 1: their (k, n) arrays named in ``ARRAYS``."""

    start: int
    stop: int
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        missing = [name for name in ARRAYS if name not in self.arrays]
        if missing:
            raise ValueError(f"shard {self.start}-{self.stop} lacks arrays {missing}")
        wrong = {n: a.shape[0] for n, a in self.arrays.items() if a.shape[0] != self.stop - self.start}
        if wrong:
            raise ValueError(f"shard {self.start}-{self.stop} must have {self.stop - self.start} rows, got {wrong}")


class CorruptShard(ValueError):
    """A stored shard that cannot be trusted (unreadable, altered, or from another experiment)."""


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    return fingerprint(*(arrays[name] for name in sorted(arrays)))


class ShardStore:
    """The shards of one experiment, in ``root / experiment_id(identity)``."""

    def __init__(self, root: str | os.PathLike, identity: Mapping[str, Any]) -> None:
        self.identity = dict(identity)
        self.id = experiment_id(self.identity)
        self.folder = Path(root) / self.id
        self.folder.mkdir(parents=True, exist_ok=True)
        self._held: set[tuple[int, int]] = set()
        description = self.folder / "experiment.json"
        if not description.exists():
            with atomic_path(description) as temporary:
                temporary.write_text(json.dumps(self.identity, sort_keys=True, indent=2, default=str))

    def path(self, start: int, stop: int) -> Path:
        return self.folder / f"shard-{start:07d}-{stop:07d}.npz"

    def write(self, shard: Shard, masks_hash: str) -> Path:
        """Store a finished shard atomically (temporary file, fsync, rename)."""
        meta = {
            "experiment": self.id,
            "start": shard.start,
            "stop": shard.stop,
            "masks": masks_hash,
            "checksum": _checksum(shard.arrays),
        }
        target = self.path(shard.start, shard.stop)
        with atomic_path(target) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, **shard.arrays, **{_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
        return target

    def read(self, path: Path, masks_hash: str) -> Shard:
        """Load and verify one stored shard; ``CorruptShard`` names the file and what is wrong."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
            raise CorruptShard(f"{path}: unreadable ({error})") from error
        if _META not in arrays:
            raise CorruptShard(f"{path}: no metadata")
        meta = json.loads(arrays.pop(_META).tobytes())
        if meta.get("experiment") != self.id:
            raise CorruptShard(f"{path}: belongs to experiment {meta.get('experiment')}, not {self.id}")
        if meta.get("masks") != masks_hash:
            raise CorruptShard(f"{path}: trained on other subset masks")
        if meta.get("checksum") != _checksum(arrays):
            raise CorruptShard(f"{path}: checksum mismatch (altered or truncated)")
        try:
            return Shard(meta["start"], meta["stop"], arrays)
        except ValueError as error:
            raise CorruptShard(f"{path}: {error}") from error

    def stored_ranges(self) -> list[tuple[int, int]]:
        """(start, stop) of every shard file present, verified or not."""
        ranges = []
        for path in self.folder.glob("shard-*-*.npz"):
            start, stop = path.stem.split("-")[1:]
            ranges.append((int(start), int(stop)))
        return sorted(ranges)

    def load_new(
        self, n_models: int, masks_hash_of: Callable[[int, int], str], known: Collection[tuple[int, int]] = ()
    ) -> dict[tuple[int, int], Shard]:
        """Every intact stored shard inside [0, n_models) not in ``known``. A corrupt one is
        reported by name, renamed ``*.corrupt`` and left to be retrained.
        ``masks_hash_of(start, stop)`` hashes the current masks of those models."""
        found: dict[tuple[int, int], Shard] = {}
        for start, stop in self.stored_ranges():
            if stop > n_models or (start, stop) in known:
                continue
            path = self.path(start, stop)
            try:
                found[(start, stop)] = self.read(path, masks_hash_of(start, stop))
            except CorruptShard as error:
                logger.warning("discarding a stored shard, it will be retrained: %s", error)
                path.replace(path.with_suffix(".corrupt"))
        return found

    def _lock(self, start: int, stop: int) -> Path:
        return self.path(start, stop).with_suffix(".claim")

    def try_claim(self, start: int, stop: int, stale_after_s: float) -> bool:
        """Claim a shard for training by creating its lock file exclusively. False when
        another live process holds the claim; a claim whose heartbeat (the lock file's
        modification time, see ``heartbeat``) is older than ``stale_after_s``, or that is held
        by a process of this host that has died, is taken over."""
        lock = self._lock(start, stop)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        claimed = _try_create(lock, owner) or (_is_stale(lock, stale_after_s) and _take_over(lock, owner))
        if claimed:
            self._held.add((start, stop))
        return claimed

    def release(self, start: int, stop: int) -> None:
        self._held.discard((start, stop))
        self._lock(start, stop).unlink(missing_ok=True)

    def heartbeat(self) -> None:
        """Refresh the modification time of every claim this store holds: the proof of life
        that keeps another host from taking over a shard still in training."""
        for start, stop in list(self._held):
            try:
                os.utime(self._lock(start, stop))
            except FileNotFoundError:
                self._held.discard((start, stop))


def _try_create(lock: Path, owner: dict[str, Any]) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(owner, handle)
    return True


def _is_stale(lock: Path, stale_after_s: float) -> bool:
    try:
        owner = json.loads(lock.read_text())
        beat = lock.stat().st_mtime
    except (OSError, ValueError):
        return True
    if time.time() - beat > stale_after_s:
        return True
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def _take_over(lock: Path, owner: dict[str, Any]) -> bool:
    """Replace a stale claim; of two processes racing for it, only one wins the rename."""
    stale = lock.with_suffix(f".stale-{owner['pid']}")
    try:
        lock.rename(stale)
    except FileNotFoundError:
        return False
    stale.unlink(missing_ok=True)
    return _try_create(lock, owner)


def missing_ranges(n_models: int, per_shard: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges of at most ``per_shard`` models covering [0, n_models) minus ``covered``,
    aligned to multiples of ``per_shard`` where possible (so reruns find the same shards)."""
    have = np.zeros(n_models, dtype=bool)
    for start, stop in covered:
        have[start:stop] = True
    ranges = []
    for block_start in range(0, n_models, per_shard):
        block = ~have[block_start : block_start + per_shard]
        positions = np.flatnonzero(block) + block_start
        if len(positions) == 0:
            continue
        runs = np.split(positions, np.flatnonzero(np.diff(positions) > 1) + 1)
        ranges += [(int(run[0]), int(run[-1]) + 1) for run in runs]
    return ranges


def assemble(shards: Mapping[tuple[int, int], Shard], n_models: int) -> dict[str, np.ndarray]:
    """Stack the shards covering [0, n_models) into (n_models, …) arrays in model order
    (where shards overlap, the first one found is used)."""
    first = next(iter(shards.values()), None)
    if first is None:
        raise ValueError(f"no shards to assemble for {n_models} models")
    filled = np.zeros(n_models, dtype=bool)
    arrays = {name: np.empty((n_models, *a.shape[1:]), dtype=a.dtype) for name, a in first.arrays.items() if name in ARRAYS}
    for (start, stop), shard in sorted(shards.items()):
        rows = np.flatnonzero(~filled[start:stop])
        for name, array in arrays.items():
            array[start + rows] = shard.arrays[name][rows]
        filled[start:stop] = True
    if not filled.all():
        gap = np.flatnonzero(~filled)
        raise ValueError(f"models {gap[0]}-{gap[-1]} are missing from the shards")
    return arrays
