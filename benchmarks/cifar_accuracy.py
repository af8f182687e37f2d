"""How accurate are a preset's models? Trains the first N subset models of ``kedro run --env
<env>`` exactly as the study trains them (same data, subsets, seeds and recipe: for the CIFAR
presets airbench94 with test-time augmentation, as correctness is judged) and prints their mean
test accuracy. Needs the dataset under ``dataset.root``; the CIFAR presets download it.

    .venv/bin/python benchmarks/cifar_accuracy.py --env cifar10             # 8 models
    .venv/bin/python benchmarks/cifar_accuracy.py --env cifar100 --json cifar100_accuracy.json

Published, for comparison (Jordan 2024, arXiv 2404.00498, and airbench 0.1.8's README): airbench94
reaches 94.01% mean test accuracy trained on all 50,000 CIFAR-10 images (9.9 epochs), and about
93% trained on a random 60% subset for 16 epochs. Not measured here: CIFAR cannot be downloaded
on the project's build machines (docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from kedro.config import OmegaConfigLoader

from longtail.nets.config import resolve_device
from longtail.nets.ensemble import train_ensemble
from longtail.params import validate_parameters
from longtail.pipelines.ingestion.nodes import load_and_split, plant_label_noise
from longtail.pipelines.sampling.nodes import draw_subset_masks
from longtail.settings import CONFIG_LOADER_ARGS
from longtail.study import train_config, training_data

CONF = Path(__file__).resolve().parents[1] / "conf"


def preset_parameters(env: str, overrides: list[str]) -> dict:
    """conf/base with conf/<env> merged on it as ``kedro run --env <env>`` merges them, then each
    ``block.key=value`` override (the value read as YAML, as ``kedro run --params`` does)."""
    parameters = OmegaConfigLoader(str(CONF), env=env, **CONFIG_LOADER_ARGS)["parameters"]
    for override in overrides:
        path, _, value = override.partition("=")
        *blocks, key = path.split(".")
        target = parameters
        for block in blocks:
            target = target[block]
        target[key] = yaml.safe_load(value)
    return parameters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="cifar10")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--params", nargs="*", default=[], help="overrides such as training.device=cuda dataset.root=/data")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parameters = preset_parameters(args.env, [f"sampling.n_models={args.models}", *args.params])
    study = validate_parameters(parameters)
    train_images, test_images, clean = load_and_split(study.dataset)
    _, train_labels, test_labels = plant_label_noise(clean, study.dataset)
    data = training_data(train_images, train_labels, test_images, test_labels)
    masks = draw_subset_masks(train_labels, study.sampling)
    config = train_config(study.training)
    started = time.perf_counter()
    trained = train_ensemble(train_images, train_labels, masks, np.arange(args.models), config, data.n_classes,
                             {"test": (test_images, test_labels)})
    seconds = time.perf_counter() - started
    accuracy = trained.correct["test"].mean(axis=1)
    result = {
        "env": args.env, "models": args.models, "model": config.model, "tta": config.tta, "epochs": config.epochs,
        "device": str(resolve_device(config.device)), "precision": config.precision,
        "mean_test_accuracy": float(accuracy.mean()), "sd_test_accuracy": float(accuracy.std(ddof=1)),
        "test_accuracy": accuracy.tolist(), "seconds": seconds, "seconds_per_model": seconds / args.models,
    }
    print(f"{args.env}: {args.models} {config.model} models on {study.sampling.subset_ratio:.0%} subsets, "
          f"mean test accuracy {100 * accuracy.mean():.2f}% (sd {100 * accuracy.std(ddof=1):.2f})")
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
