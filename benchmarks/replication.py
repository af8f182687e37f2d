"""Do a study's reported lists replicate? (issue 11's measure)

A study of N models (default 500, scheme independent or balanced) is compared with an
independent reference: models 500 … 1,999 of the default study grown to 2,000 models
(independent scheme; they never share a model with any study of at most 500 models). A
reported pair replicates when its reference infl ≥ 0.10, a reported memorized example when
its reference mem ≥ 0.15; coverage is the share of the reference's own selection (infl ≥ 0.15
and mem ≥ 0.25 over the 1,500 reference models, same-class pairs) that the report holds.

Trained models are reused through the shard store (``--store``, outside the worktree), so
only the first call trains:

    python benchmarks/replication.py train --scheme independent --models 2000
    python benchmarks/replication.py train --scheme balanced --models 500
    python benchmarks/replication.py measure --models 500 --scheme independent --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import yaml

from longtail.executors import LocalExecutor, train_with_store
from longtail.params import BLOCKS
from longtail.pipelines.ingestion.nodes import load_and_split, plant_label_noise
from longtail.pipelines.sampling.nodes import draw_subset_masks
from longtail.shards import ShardStore
from longtail.study import experiment_identity, train_config, training_data

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"
REFERENCE = (500, 2000)  # models of the independent study taken as the reference
PER_SHARD = 50


def default_parameters() -> dict:
    merged: dict = {}
    for path in sorted(CONF.glob("parameters_*.yml")):
        merged.update(yaml.safe_load(path.read_text()))
    return merged


def study_arrays(store_root: Path, scheme: str, n_models: int) -> dict[str, np.ndarray]:
    """Masks, labels and correctness of the default study's first ``n_models`` models under
    ``scheme``, training (and storing) whatever the store lacks."""
    params = default_parameters()
    train_images, test_images, clean = load_and_split(params["dataset"])
    examples, train_labels, test_labels = plant_label_noise(clean, params["dataset"])
    sampling = {**params["sampling"], "n_models": n_models, "scheme": scheme}
    masks = draw_subset_masks(train_labels, sampling)
    config = train_config(BLOCKS["training"].model_validate(params["training"]))
    data = training_data(train_images, train_labels, test_images, test_labels)
    store = ShardStore(store_root, experiment_identity(data, config, BLOCKS["sampling"].model_validate(sampling)))
    arrays, trained = train_with_store(store, masks, data, config, PER_SHARD, LocalExecutor())
    logging.info("%s: %d models, %d trained now", scheme, n_models, trained)
    return {"masks": masks, "train_labels": train_labels, "test_labels": test_labels, **arrays}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train", "measure"])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--scheme", choices=["independent", "balanced"], default="independent")
    parser.add_argument("--store", type=Path, default=Path("/work/bench-cache/shards"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    if args.command == "train":
        study_arrays(args.store, args.scheme, args.models)
        print(json.dumps({"trained": args.models, "scheme": args.scheme, "seconds": time.perf_counter() - started}))
        return
    raise SystemExit("measure: not written yet")


if __name__ == "__main__":
    main()
