"""What the training-provenance check (``longtail.hooks.TrainingProvenanceHook``) costs on a
CIFAR-shaped study: hashing every checked input before every node that reads the masks with a
training result (what the hook did before it cached fingerprints) against hashing each version
of an artefact once, when training writes it.

Synthetic arrays of the cifar10 preset's shapes (``--models`` subset models, 50,000 training and
10,000 test examples; about 0.35 MB per model) are saved as the catalog saves them (versioned
.npy files, each save seen by the hook), then the hook runs before each of the project's own
nodes that read them (``__default__``: convergence, memorization, influence), on the inputs
loaded from disk as Kedro's runner loads them (loading is not timed: the runner does it either
way). "Before" is the same hook forgetting what it hashed before every node.

    .venv/bin/python benchmarks/provenance.py --models 2000 --json provenance.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog, Version
from kedro.io.core import generate_timestamp
from kedro.io.memory_dataset import MemoryDataset

from longtail.hooks import TrainingProvenanceHook
from longtail.io import NpyDataset
from longtail.study import TRAINING_RESULTS, training_provenance

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 50_000, 10_000  # CIFAR-10 and CIFAR-100


def synthetic_study(models: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Masks and training results of the shapes and dtypes training writes."""
    rng = np.random.default_rng(seed)
    return {
        "subset_masks": rng.random((models, N_TRAIN)) < 0.7,
        "train_correct": rng.random((models, N_TRAIN)) < 0.9,
        "train_true_prob": rng.random((models, N_TRAIN), dtype=np.float32),
        "train_margin": rng.standard_normal((models, N_TRAIN), dtype=np.float32),
        "test_correct": rng.random((models, N_TEST)) < 0.9,
        "test_true_prob": rng.random((models, N_TEST), dtype=np.float32),
        "test_margin": rng.standard_normal((models, N_TEST), dtype=np.float32),
    }


def checking_nodes() -> list:
    """The default pipeline's nodes that the hook checks: those reading the masks and a training result."""
    bootstrap_project(ROOT)
    from longtail.pipeline_registry import register_pipelines  # noqa: PLC0415 - needs the project bootstrapped

    watched = {"subset_masks", *TRAINING_RESULTS}
    return [n for n in register_pipelines()["__default__"].nodes if "subset_masks" in n.inputs and len(watched & set(n.inputs)) > 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    arrays, nodes = synthetic_study(args.models), checking_nodes()
    provenance = training_provenance(arrays["subset_masks"], "synthetic", {name: arrays[name] for name in TRAINING_RESULTS})
    with tempfile.TemporaryDirectory() as folder:
        version = Version(None, generate_timestamp())
        catalog = DataCatalog({
            **{name: NpyDataset(filepath=f"{folder}/{name}.npy", version=version) for name in arrays},
            "training_provenance": MemoryDataset(provenance),
        })
        hook = TrainingProvenanceHook()
        hook.after_catalog_created(catalog)
        hashing_on_write = 0.0
        for name, array in arrays.items():
            catalog.save(name, array)
            started = time.perf_counter()
            hook.after_dataset_saved(name, array, None)
            hashing_on_write += time.perf_counter() - started
        forgetful = TrainingProvenanceHook()  # told of a new catalog before each node: hashes every input, as before
        timings: dict[str, list[float]] = {"before": [], "after": []}
        for node in nodes:
            inputs = {name: catalog.load(name) for name in node.inputs if name in arrays}
            forgetful.after_catalog_created(catalog)
            for mode, checker in (("after", hook), ("before", forgetful)):
                started = time.perf_counter()
                checker.before_node_run(node, catalog, inputs)
                timings[mode].append(time.perf_counter() - started)
    result = {
        "models": args.models, "n_train": N_TRAIN, "n_test": N_TEST,
        "megabytes": sum(a.nbytes for a in arrays.values()) / 2**20,
        "nodes": [n.name for n in nodes],
        "before_seconds_per_node": timings["before"], "after_seconds_per_node": timings["after"],
        "before_seconds": sum(timings["before"]), "after_seconds": sum(timings["after"]),
        "after_hashing_on_write_seconds": hashing_on_write,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
