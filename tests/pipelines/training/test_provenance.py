"""Subset masks and training results from different runs are never combined."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.test_study import run_study


def test_scoring_new_masks_against_old_models_is_refused(
    make_project: Callable[[str], Path], kedro_cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    root = make_project("provenance")
    run_study(root, pipeline_names=["ingestion", "sampling", "training"])
    run_study(root, pipeline_names=["sampling"], runtime_params={"sampling": {"seed": 7}})  # training not rerun
    masks_before = sorted((root / "data" / "05_model_input" / "subset_masks.npy").iterdir())
    result = kedro_cli(root, "run", "--env", "smoke", "--pipelines", "scoring")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "'score_memorization' would combine subset_masks (version 20" in message
    assert "train_correct (version 20" in message and "training_provenance (version 20" in message
    assert "subset_masks differ from what training recorded" in message
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert not (root / "data" / "07_model_output" / "memorization_scores.parquet").exists()
    assert sorted((root / "data" / "05_model_input" / "subset_masks.npy").iterdir()) == masks_before
