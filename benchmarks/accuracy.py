"""Do batched subset models reach the accuracy of the per-model loop? Trains the default
study's first N subset models (conf/base: mnist5k, 784-512-256-10, 10 epochs, SGD) both ways
and compares their test accuracy.

Measured (2-core Sapphire Rapids Xeon, torch 2.14.1 CPU): see docs/benchmarks.md.

    .venv/bin/python benchmarks/accuracy.py --models 32 --json accuracy.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from longtail.nets.ensemble import train_ensemble, train_one_by_one
from longtail.params import validate_parameters
from longtail.pipelines.ingestion.nodes import load_and_split, plant_label_noise
from longtail.pipelines.sampling.nodes import draw_subset_masks
from longtail.study import train_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"


def default_parameters() -> dict:
    merged: dict = {}
    for path in sorted(CONF.glob("parameters_*.yml")):
        merged.update(yaml.safe_load(path.read_text()))
    return merged


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = default_parameters()
    study = validate_parameters({**params, "sampling": {**params["sampling"], "n_models": args.models}})
    train_images, test_images, clean = load_and_split(study.dataset)
    _, train_labels, test_labels = plant_label_noise(clean, study.dataset)
    masks = draw_subset_masks(train_labels, study.sampling)
    config = train_config(study.training)
    eval_sets = {"test": (test_images, test_labels)}
    result = {"models": args.models, "config": {k: str(v) for k, v in vars(config).items()}}
    for name, trainer in (("vectorized", train_ensemble), ("loop", train_one_by_one)):
        started = time.perf_counter()
        trained = trainer(train_images, train_labels, masks, np.arange(args.models), config, 10, eval_sets)
        accuracy = trained.correct["test"].mean(axis=1)
        result[f"{name}_test_accuracy"] = float(accuracy.mean())
        result[f"{name}_test_accuracy_sd"] = float(accuracy.std(ddof=1))
        result[f"{name}_seconds"] = time.perf_counter() - started
    result["difference_points"] = 100 * (result["vectorized_test_accuracy"] - result["loop_test_accuracy"])
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
