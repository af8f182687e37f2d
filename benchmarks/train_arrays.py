"""Train a prepared study's models with the library alone (no Kedro, MLflow or store): for a
GPU machine that has PyTorch but not the project's stack.

    python benchmarks/replication.py prepare --models 2000 --trained DIR  # here: data, masks, config
    PYTHONPATH=src python benchmarks/train_arrays.py DIR [--device cuda]  # there: writes DIR/trained.npz
    python benchmarks/replication.py measure --trained DIR                # here again

``inputs.npz`` holds the study's images, labels and subset masks exactly as the pipelines make
them, ``config.json`` the ``TrainConfig`` that ``longtail.study.train_config`` derives from the
default parameters. ``trained.npz`` holds both correctness arrays (packed bits) and timings.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from longtail.nets.config import TrainConfig, resolve_precision
from longtail.nets.ensemble import train_ensemble


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto: what the study's default picks on this device (resolve_precision)")
    args = parser.parse_args()
    inputs = np.load(args.folder / "inputs.npz", allow_pickle=False)
    settings = json.loads((args.folder / "config.json").read_text())
    config = TrainConfig(**{**settings, "hidden_sizes": tuple(settings["hidden_sizes"])})
    config = replace(config, device=args.device, precision=resolve_precision(args.precision, args.device, config.model))
    masks = inputs["masks"]
    started = time.perf_counter()
    result = train_ensemble(
        inputs["train_images"], inputs["train_labels"], masks, np.arange(len(masks)), config,
        int(inputs["n_classes"]), {"train": (inputs["train_images"], inputs["train_labels"]),
                                   "test": (inputs["test_images"], inputs["test_labels"])},
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    np.savez_compressed(
        args.folder / "trained.npz",
        train_correct=np.packbits(result.correct["train"], axis=1),
        test_correct=np.packbits(result.correct["test"], axis=1),
        shape_train=np.array(result.correct["train"].shape), shape_test=np.array(result.correct["test"].shape),
    )
    device = torch.cuda.get_device_name() if config.device != "cpu" and torch.cuda.is_available() else "cpu"
    facts = {"models": len(masks), "seconds": seconds, "models_per_s": len(masks) / seconds, "device": device,
             "precision": config.precision, "torch": torch.__version__, "config": asdict(config),
             "train_accuracy_mean": float(result.correct["train"].mean()), "test_accuracy_mean": float(result.correct["test"].mean())}
    (args.folder / "trained.json").write_text(json.dumps(facts, indent=2))
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
