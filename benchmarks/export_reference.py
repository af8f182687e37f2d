"""Write the reference models of a replication study as one npz (no pickle), the input of
``benchmarks/approximations.py --reference-npz``: ``masks``, ``train_correct``,
``test_correct`` of the reference models, ``train_labels``, ``test_labels``, and
``reference_models`` ([start, stop)) and ``experiment`` (the store's experiment id).

It only reads the shard store (a missing model stops it, naming the gap), and it runs on the
code that trained the store: the longtail it imports, with that checkout's own
benchmarks/replication.py to rebuild the study's masks and identity. For the 2,000-model
mnist5k study trained by ``benchmarks/replication.py train --models 2000``:

    cd /work/wt/ref && PYTHONPATH=src .venv/bin/python <this file> --out ~/reference-500-2000.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import longtail
from longtail.io.atomic import atomic_path
from longtail.shards import ShardStore, assemble, experiment_id, fingerprint
from longtail.study import experiment_identity, training_data

CHECKOUT = Path(longtail.__file__).resolve().parents[2]
sys.path.insert(0, str(CHECKOUT / "benchmarks"))

from replication import study_inputs  # noqa: E402 - the trained checkout's own


def export(store_root: Path, dataset: str, n_models: int, reference: tuple[int, int], out: Path) -> str:
    """Write models ``reference[0]`` … ``reference[1]`` − 1 of the independent-scheme study of
    ``n_models`` models stored under ``store_root`` to ``out``; return the experiment id."""
    inputs, config, sampling = study_inputs(dataset, "independent", n_models)
    data = training_data(inputs["train_images"], inputs["train_labels"], inputs["test_images"], inputs["test_labels"])
    identity = experiment_identity(data, config, sampling)
    if not (store_root / experiment_id(identity)).is_dir():
        raise SystemExit(f"{store_root} holds no store of this study (experiment {experiment_id(identity)}, code at {CHECKOUT})")
    store, masks = ShardStore(store_root, identity), inputs["masks"]
    arrays = assemble(store.load_new(n_models, lambda start, stop: fingerprint(masks[start:stop])), n_models)
    start, stop = reference
    with atomic_path(out) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(
            handle,
            masks=masks[start:stop],
            train_correct=arrays["train_correct"][start:stop],
            test_correct=arrays["test_correct"][start:stop],
            train_labels=inputs["train_labels"],
            test_labels=inputs["test_labels"],
            reference_models=np.array([start, stop]),
            experiment=np.array(store.id),
        )
    return store.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--models", type=int, default=2000, help="the stored study's size")
    parser.add_argument("--reference", type=int, nargs=2, default=(500, 2000), help="reference models [start, stop)")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "longtail" / "replication-shards")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start, stop = args.reference
    if not 0 <= start < stop <= args.models:
        raise SystemExit(f"--reference {start} {stop} must lie within the study's {args.models} models")
    experiment = export(args.store, args.dataset, args.models, (start, stop), args.out)
    print(f"wrote models {start}-{stop - 1} of experiment {experiment} to {args.out}")


if __name__ == "__main__":
    main()
