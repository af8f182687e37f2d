"""A resumable store of trained shards, in the spirit of MadryLab's datamodels: a shard is a
range of model indices trained together; each finished shard is one ``.npz`` file (no
pickle) written atomically, carrying a checksum, the experiment's identity and the hash of
the subset masks it was trained on. Whatever is stored and intact is reused; whatever is
missing, truncated or altered is trained again. Kedro-free.

Layout: ``<root>/<experiment id>/experiment.json`` (what the id stands for),
``<root>/<experiment id>/shard-<start>-<stop>.npz`` (models start … stop − 1) and
``claim-<block>.<generation>`` files, by which concurrent runs share out blocks of
``CLAIM_BLOCK`` models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longtail.io.atomic import atomic_path

logger = logging.getLogger(__name__)

ARRAYS = ("train_correct", "train_true_prob", "train_margin", "test_correct", "test_true_prob", "test_margin", "epoch_loss")
_META = "__meta__"
#: Models per claim. Fixed, whatever the shard size of a run (64 on CPU, 512 on CUDA by
#: default), so that runs with different shard sizes claim the same blocks and never train
#: overlapping models.
CLAIM_BLOCK = 64


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
        self._held: dict[int, Path] = {}  # claim block -> this store's claim file
        description = self.folder / "experiment.json"
        if not description.exists():
            with atomic_path(description) as temporary:
                temporary.write_text(json.dumps(self.identity, sort_keys=True, indent=2, default=str))

    def superseded(self) -> list[Path]:
        """The folders beside this one that hold the same experiment in an older store format
        (an identity equal but for a lower ``format``): models that this format would store
        with more arrays, and trains again."""
        mine = _without_format(self.identity)
        found = []
        for description in sorted(self.folder.parent.glob("*/experiment.json")):
            try:
                other = json.loads(description.read_text())
            except (OSError, ValueError):
                continue
            older = isinstance(other, dict) and other.get("format", 0) < self.identity.get("format", 0)
            if older and _without_format(other) == mine:
                found.append(description.parent)
        return found

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
        """Every intact stored shard inside [0, n_models) not in ``known``; a damaged one is
        skipped. ``masks_hash_of(start, stop)`` hashes the current masks of those models.

        Only the holder of the claim on a shard's first block touches its file: while this
        store holds it, a damaged shard is reported by name and renamed ``*.corrupt`` (its
        models are then missing, and trained again under that claim). Any other run leaves the
        file alone, so two runs meeting one damaged shard never both set it aside, nor one set
        aside the file the other has just written in its place."""
        found: dict[tuple[int, int], Shard] = {}
        for start, stop in self.stored_ranges():
            if stop > n_models or (start, stop) in known:
                continue
            path = self.path(start, stop)
            try:
                found[(start, stop)] = self.read(path, masks_hash_of(start, stop))
            except CorruptShard as error:
                if blocks_of(start, stop)[0] in self._held:
                    logger.warning("discarding a stored shard, it will be retrained: %s", error)
                    path.replace(path.with_suffix(".corrupt"))
                else:
                    logger.debug("skipping a stored shard, left to the holder of its claim: %s", error)
        return found

    def _claim_path(self, block: int, generation: int) -> Path:
        return self.folder / f"claim-{block:06d}.{generation:08d}"

    def _generations(self, block: int) -> list[tuple[int, Path]]:
        """The block's claim files present, oldest generation first."""
        prefix = f"claim-{block:06d}."
        found = [(int(p.name[len(prefix) :]), p) for p in self.folder.glob(prefix + "*") if p.suffix[1:].isdigit()]
        return sorted(found)

    def try_claim(self, block: int, stale_after_s: float) -> bool:
        """Claim block ``block`` (models ``block_range(block)``) for training. False when another
        live run holds it. A claim is a generation file ``claim-<block>.<generation>``, created
        complete and exclusively (``os.link``); whoever creates the next generation owns the
        block, so of many runs seeing the same free, released or dead claim exactly one wins.
        A claim is dead when its heartbeat (the file's modification time, see ``heartbeat``)
        is older than ``stale_after_s``, or its process on this host has exited."""
        generations = self._generations(block)
        if generations and not _is_free(generations[-1][1], stale_after_s):
            return False
        generation = generations[-1][0] + 1 if generations else 0
        mine = self._claim_path(block, generation)
        if not _link_new(mine, _owner()):
            return False
        if self._generations(block)[-1][0] != generation:  # recreated a generation long superseded
            mine.unlink(missing_ok=True)
            return False
        self._held[block] = mine
        for _, superseded in generations:
            superseded.unlink(missing_ok=True)
        return True

    @contextmanager
    def claims(self, blocks: Iterable[int], stale_after_s: float) -> Iterator[set[int]]:
        """Claim every one of ``blocks`` that no live run holds (``try_claim``) and yield
        those won; all are released on leaving, however the block is left, so a run that
        fails anywhere after claiming never keeps its claims until they go stale."""
        won: set[int] = set()
        try:
            for block in blocks:
                if self.try_claim(block, stale_after_s):
                    won.add(block)
            yield won
        finally:
            for block in won:
                self.release(block)

    def release(self, block: int) -> None:
        """Give a claimed block back, unless another run has taken it over meanwhile: the
        release is the next generation, which only the owner of the latest one can create."""
        mine = self._held.pop(block, None)
        if mine is None:
            return
        generation = int(mine.suffix[1:])
        if _link_new(self._claim_path(block, generation + 1), {"released": True, **_owner()}):
            mine.unlink(missing_ok=True)

    def heartbeat(self) -> None:
        """Refresh the modification time of every claim this store holds: the proof of life
        that keeps another host from taking over a block still in training."""
        for block, path in list(self._held.items()):
            try:
                os.utime(path)
            except FileNotFoundError:
                self._held.pop(block, None)


def _without_format(identity: Mapping[str, Any]) -> Any:
    """An identity as its JSON description reads back, without its ``format``."""
    return json.loads(json.dumps({k: v for k, v in identity.items() if k != "format"}, sort_keys=True, default=str))


def block_range(block: int, n_models: int) -> tuple[int, int]:
    """The models of claim block ``block`` (the last block of a study may be shorter)."""
    return block * CLAIM_BLOCK, min((block + 1) * CLAIM_BLOCK, n_models)


def blocks_of(start: int, stop: int) -> range:
    """The claim blocks that models ``start`` … ``stop`` − 1 fall in."""
    return range(start // CLAIM_BLOCK, (stop - 1) // CLAIM_BLOCK + 1)


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": uuid.uuid4().hex}


def _link_new(path: Path, content: dict[str, Any]) -> bool:
    """Create ``path`` holding ``content``, unless it exists: the file is written under a
    temporary name and hard-linked into place, so no reader ever sees it empty or partial."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(json.dumps(content))
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink()
    return True


def _is_free(claim: Path, stale_after_s: float) -> bool:
    """Whether the latest claim of a block may be superseded: released, or its owner dead."""
    try:
        owner = json.loads(claim.read_text())
        beat = claim.stat().st_mtime
    except FileNotFoundError:
        return False  # superseded while we looked: its successor decides next time
    except (OSError, ValueError):
        return True  # not written by this protocol (its files are complete when they appear)
    if owner.get("released") or time.time() - beat > stale_after_s:
        return True
    return owner.get("host") == socket.gethostname() and not _alive(int(owner["pid"]))


def _alive(pid: int) -> bool:
    """Whether a process of this host is running (assumed so where the OS cannot tell cheaply:
    on Windows ``os.kill(pid, 0)`` would terminate it)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
