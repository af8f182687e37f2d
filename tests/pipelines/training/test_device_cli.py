"""A device the machine lacks is refused with the parameters: one message, nothing written."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.test_cli import written_files


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_training_on_a_missing_gpu_stops_before_anything_is_written(
    make_project: Callable[[str], Path], kedro_cli: Callable[..., subprocess.CompletedProcess]
) -> None:
    root = make_project("no-gpu")
    result = kedro_cli(root, "run", "--env", "smoke", "--params", "training.device=cuda")
    assert result.returncode == 1
    assert "training.device='cuda': not available on this machine" in result.stderr
    assert "allowed: auto, cpu" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "╭" not in result.stderr
    assert written_files(root) == []
