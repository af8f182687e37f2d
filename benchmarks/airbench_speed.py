"""How fast does airbench94 train the CIFAR presets' models? Times the recipe of conf/cifar10 on
CIFAR-shaped synthetic data, one model at a time against small stacks, and projects the hours
the `cifar10` (2,000 models) and `cifar100` (4,000 models) presets spend training their subset
models. Kedro-free (the library, PyYAML and numpy), so it runs on a lent GPU machine.

    python benchmarks/airbench_speed.py --device cuda --json airbench_speed.json
    python benchmarks/airbench_speed.py --device cpu --n-train 200 --n-test 50 --models 2 --stacks 1 2  # smoke

For each stack size (``training.models_in_memory``), after a warm-up: ``--models`` models train
``--epochs`` epochs on random 70% subsets without evaluation (seconds per epoch), then one epoch
with the study's evaluation, every training and test image under the preset's test-time
augmentation (the difference is the evaluation's cost). One model of the preset costs
``preset epochs x epoch + evaluation``, scaled from ``--n-train`` images to CIFAR's 50,000 and
10,000 (both linear in the number of images). Not measured yet on a GPU: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from longtail.nets.config import TrainConfig, resolve_device, resolve_precision
from longtail.nets.ensemble import train_ensemble

CONF = Path(__file__).resolve().parents[1] / "conf"
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
PRESET_MODELS = {"cifar10": 2_000, "cifar100": 4_000}


def preset_config(env: str, device: str, precision: str | None = None) -> TrainConfig:
    """The training settings conf/<env> gives (they cover every setting that changes numbers),
    with ``precision`` instead of the preset's when given."""
    training = yaml.safe_load((CONF / env / "parameters.yml").read_text())["training"]
    settings = {f.name: training[f.name] for f in fields(TrainConfig) if f.name in training}
    settings["precision"] = resolve_precision(precision or training.get("precision", "auto"), device, training["model"])
    return TrainConfig(**{**settings, "device": device})


def seconds(config: TrainConfig, data: tuple[np.ndarray, ...], models: int, evaluate: bool) -> float:
    train_x, train_y, test_x, test_y = data
    rng = np.random.default_rng(1)
    masks = np.stack([rng.permutation(len(train_x)) < round(0.7 * len(train_x)) for _ in range(models)])
    eval_sets = {"train": (train_x, train_y), "test": (test_x, test_y)} if evaluate else {}
    started = time.perf_counter()
    train_ensemble(train_x, train_y, masks, np.arange(models), config, 10, eval_sets)
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-train", type=int, default=CIFAR_TRAIN)
    parser.add_argument("--n-test", type=int, default=CIFAR_TEST)
    parser.add_argument("--models", type=int, default=8, help="models timed per stack size")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the training-only run")
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 2, 4, 8], help="models per shard to time")
    parser.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16"), help="default: the preset's")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    preset = preset_config("cifar10", args.device, args.precision)
    rng = np.random.default_rng(0)
    n = args.n_train + args.n_test
    images, labels = rng.random((n, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, n)
    data = (images[: args.n_train], labels[: args.n_train], images[args.n_train :], labels[args.n_train :])
    seconds(replace(preset, epochs=1, models_in_memory=1), data, 1, evaluate=True)  # warm-up
    result: dict = {
        "device": str(resolve_device(args.device)), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "precision": preset.precision,
        "n_train": args.n_train, "n_test": args.n_test, "models": args.models, "preset_epochs": preset.epochs, "stacks": {},
    }
    for stack in args.stacks:
        config = replace(preset, models_in_memory=stack)
        training = seconds(replace(config, epochs=args.epochs), data, args.models, evaluate=False)
        epoch = training / args.epochs / args.models
        evaluation = max(seconds(replace(config, epochs=1), data, args.models, evaluate=True) / args.models - epoch, 0.0)
        scale_train, scale_eval = CIFAR_TRAIN / args.n_train, (CIFAR_TRAIN + CIFAR_TEST) / n
        per_model = preset.epochs * epoch * scale_train + evaluation * scale_eval
        result["stacks"][stack] = {
            "epoch_seconds_per_model": epoch, "evaluation_seconds_per_model": evaluation,
            "models_per_s_one_epoch": 1 / epoch, "preset_seconds_per_model": per_model,
            "projected_hours": {env: count * per_model / 3600 for env, count in PRESET_MODELS.items()},
        }
        print(f"{stack} per shard: {per_model:.2f} s per preset model; cifar10 {2000 * per_model / 3600:.2f} h, "
              f"cifar100 {4000 * per_model / 3600:.2f} h", flush=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
