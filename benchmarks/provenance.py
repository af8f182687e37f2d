"""What the training-provenance check (``longtail.hooks.TrainingProvenanceHook``) costs on a
CIFAR-shaped study, before each of the project's nodes it checks (``__default__``: those that
read the masks with a training result):

- ``before``: hashing every checked input before every node (what the hook did at first);
- ``after_training_run``: in the run that trains, the fingerprints the training node recorded
  in ``training_provenance`` (it hashes its inputs and outputs once, whatever the hook does)
  stand for the versions it read and wrote, so the checks hash nothing;
- ``after_loading_run``: in a run that reads stored results (``--pipelines scoring``), each
  version is hashed before the first node that reads it, once.

Synthetic arrays of the cifar10 preset's shapes (``--models`` subset models, 50,000 training and
10,000 test examples; about 0.56 MB per model) are saved as the catalog saves them (versioned
.npy files) and loaded from disk as Kedro's runner loads them (loading is not timed: the runner
does it either way).

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
from kedro.pipeline import Node

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


def check_seconds(hook: TrainingProvenanceHook, nodes: list, catalog: DataCatalog, names: set[str], forget: bool) -> list[float]:
    """Seconds of ``hook``'s check before each node, on inputs loaded from ``catalog``;
    ``forget``: told of a new catalog before each node, so it hashes every input (the old hook)."""
    seconds = []
    for node in nodes:
        inputs = {name: catalog.load(name) for name in node.inputs if name in names}
        if forget:
            hook.after_catalog_created(catalog)
        started = time.perf_counter()
        hook.before_node_run(node, catalog, inputs)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    arrays, nodes = synthetic_study(args.models), checking_nodes()
    started = time.perf_counter()
    provenance = training_provenance(arrays["subset_masks"], "synthetic", {name: arrays[name] for name in TRAINING_RESULTS})
    recording = time.perf_counter() - started
    training = Node(lambda masks: None, "subset_masks", [*TRAINING_RESULTS, "training_provenance"], name="train")
    with tempfile.TemporaryDirectory() as folder:
        version = Version(None, generate_timestamp())
        catalog = DataCatalog({
            **{name: NpyDataset(filepath=f"{folder}/{name}.npy", version=version) for name in arrays},
            "training_provenance": MemoryDataset(provenance),
        })
        for name, array in arrays.items():
            catalog.save(name, array)
        timings = {"before": check_seconds(TrainingProvenanceHook(), nodes, catalog, set(arrays), forget=True)}
        trained = TrainingProvenanceHook()
        trained.after_catalog_created(catalog)
        trained.after_node_run(training, catalog, {"training_provenance": provenance})
        timings["after_training_run"] = check_seconds(trained, nodes, catalog, set(arrays), forget=False)
        loading = TrainingProvenanceHook()
        loading.after_catalog_created(catalog)
        timings["after_loading_run"] = check_seconds(loading, nodes, catalog, set(arrays), forget=False)
    result = {
        "models": args.models, "n_train": N_TRAIN, "n_test": N_TEST,
        "megabytes": sum(a.nbytes for a in arrays.values()) / 2**20,
        "nodes": [n.name for n in nodes],
        "training_records_provenance_seconds": recording,
        **{f"{mode}_seconds_per_node": seconds for mode, seconds in timings.items()},
        **{f"{mode}_seconds": sum(seconds) for mode, seconds in timings.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
