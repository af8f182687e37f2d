"""One driver of a shared shard store, run as a process of its own by the concurrency tests
(tests/test_store_concurrency.py), as a `kedro run`'s training node drives the store:

    python tests/store_driver.py STUDY.npz ROOT PER_SHARD LOG RESULT.npz [GO]

trains the tiny study in STUDY.npz (``save_study``) into the store under ROOT with
``train_with_store`` on the local executor, in stored shards of PER_SHARD models; appends
"<pid> <start> <stop>" to LOG for each shard it trains and stores; and saves the arrays it
ends with to RESULT.npz. With GO, once imported and loaded it creates GO.ready.<pid> and
waits until GO exists, so that several drivers start on the store within a millisecond or two
of each other.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from longtail.executors import LocalExecutor, TrainingData, train_with_store
from longtail.nets.config import TrainConfig
from longtail.shards import Shard, ShardStore

# float64: models grouped into other shards run other kernels; their rounding (~1e-16) stays
# far below what the comparisons allow (see tests/test_executors.py). One thread: drivers
# share a machine's cores.
CONFIG = TrainConfig(model="mlp", hidden_sizes=(4,), epochs=1, batch_size=64, lr=0.05, device="cpu", precision="fp64", threads=1)
IDENTITY = {"test": "store concurrency", "config": repr(CONFIG)}


def save_study(path: Path, data: TrainingData, masks: np.ndarray) -> None:
    np.savez(path, train_images=data.train_images, train_labels=data.train_labels, test_images=data.test_images,
             test_labels=data.test_labels, n_classes=data.n_classes, masks=masks)


def load_study(path: Path) -> tuple[TrainingData, np.ndarray]:
    with np.load(path, allow_pickle=False) as study:
        data = TrainingData(study["train_images"], study["train_labels"], study["test_images"], study["test_labels"],
                            int(study["n_classes"]))
        return data, study["masks"]


def drive(store: ShardStore, data: TrainingData, masks: np.ndarray, per_shard: int, log: Path) -> dict[str, np.ndarray]:
    """Make ``store`` hold every model of ``masks``; return their arrays."""

    def record(shard: Shard, _masks: np.ndarray) -> None:
        with open(log, "a") as handle:  # one short O_APPEND write: lines of drivers never interleave
            handle.write(f"{os.getpid()} {shard.start} {shard.stop}\n")

    arrays, _ = train_with_store(store, masks, data, CONFIG, per_shard, LocalExecutor(), record, stale_after_s=600, poll_s=0.05)
    return arrays


def main(study: str, root: str, per_shard: str, log: str, result: str, go: str | None = None) -> None:
    data, masks = load_study(Path(study))
    store = ShardStore(root, IDENTITY)
    if go is not None:
        Path(f"{go}.ready.{os.getpid()}").touch()
        while not os.path.exists(go):
            time.sleep(0.001)
    np.savez(result, **drive(store, data, masks, int(per_shard), Path(log)))


if __name__ == "__main__":
    main(*sys.argv[1:])
