"""`kedro run --env cifar10`, the preset as a user runs it (airbench94 and its recipe), on
CIFAR-10 files in torchvision's on-disk format, on the CPU with the sizes made tiny by --params."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.sources.fakes import write_cifar10

CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "cifar_accuracy.py"

TINY = ",".join([
    "sampling.n_models=4", "training.epochs=1", "training.batch_size=8", "training.device=cpu",
    "removal.thresholds=[0.5]", "removal.repeats=1", "diagnostics.proxy_models=1", "diagnostics.model_counts=[2]",
])


def test_the_cifar10_preset_runs_the_whole_study_with_airbench94(make_project: Callable[[str], Path], kedro_cli) -> None:
    root = make_project("cifar10")
    written = write_cifar10(root / "data" / "01_raw")
    result = kedro_cli(root, "run", "--env", "cifar10", "--params", TINY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [experiment] = (root / "data" / "06_models" / "shards").glob("*/experiment.json")
    training = json.loads(experiment.read_text())["training"]
    assert (training["model"], training["tta"], training["schedule"]) == ("airbench94", "mirror_translate", "triangular")
    [correct] = (root / "data" / "07_model_output").glob("train_correct.npy/*/train_correct.npy")
    assert np.load(correct).shape == (4, len(written.train_labels))
    # the users' check trains the study's first models as the study does: the same test accuracy
    [test_correct] = (root / "data" / "07_model_output").glob("test_correct.npy/*/test_correct.npy")
    overrides = ["training.epochs=1", "training.batch_size=8", "training.device=cpu"]
    check = subprocess.run([sys.executable, str(CHECK), "--env", "cifar10", "--models", "2", "--params", *overrides],
                           cwd=root, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-3000:]
    printed = json.loads(check.stdout[check.stdout.index("{"):])
    assert printed["mean_test_accuracy"] == np.load(test_correct)[:2].mean()
